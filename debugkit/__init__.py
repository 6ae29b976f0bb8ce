"""debugkit: debug shell-less containers with a least-privilege tools sidecar."""

__version__ = "0.1.0"
