"""The conformance tables: kube_cases (kubectl) and docker_cases (the docker CLI)."""
