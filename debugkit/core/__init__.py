"""The pure core: target references, identity, the sidecar spec, profiles, options and
their validation, errors. No I/O: no engine, no cluster, no files, no environment."""
