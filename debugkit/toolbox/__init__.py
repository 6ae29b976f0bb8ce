"""The toolbox image: building it (build.py) and putting it in a registry (push.py).
The image's own files are in toolbox-image/ at the repository's top (linked as image/)."""
