"""The Podman runtime: the Docker runtime pointed at Podman's Docker-compatible service.

Only what Podman 4.3 really does differently is specialised here (docs/podman.md has the
evidence, measured against the real service by scripts/compat-probe):

- the exit code: `wait?condition=next-exit` answers about 240 ms late and may in
  principle miss an exit, and `removed` answers 0 under AutoRemove (why `docker run --rm`
  against Podman always reported 0). debugkit polls inspect after the output ends (the
  code is there within 2-17 ms, before the auto-removal), then falls back to the
  container's `died` event;
- attach, not start, creates the process: a missing command or a stopped target is a 409
  at attach, and a start after a failed attach would *restart a stopped target*. So every
  sidecar is attached before it is started, and attach errors are start errors;
- `top` with ps arguments runs `ps` inside the target: never used. The process identity
  comes from /proc (a local service) or not at all;
- a removed container answers 500 "does not exist in database" for a moment before 404.
"""
from __future__ import annotations

import os
import time

from debugkit.core.errors import DebugkitError, IdentityUnresolved
from debugkit.runtimes.docker.errors import start_error
from debugkit.runtimes.docker.probe import ContainerProbe
from debugkit.runtimes.docker.runtime import DockerRuntime
from debugkit.runtimes.podman.address import DEFAULT_SOCKET, podman_address

EXIT_POLL_SECONDS = 30.0


class PodmanProbe(ContainerProbe):
    def process_identity(self, target):
        if target.image_only:
            return super().process_identity(target)  # says an image has no process
        status = self.local_proc_status(target)
        if status is None:
            raise IdentityUnresolved("the process is not visible from here, and Podman's top API would run ps "
                                     "inside the target, which debugkit never does")
        from debugkit.core import identity as ident

        return ident.identity_from_status(status, source=ident.SOURCE_PROCESS)


def gone(exc) -> bool:
    """404, or Podman's 500 "does not exist in database" while it removes a container."""
    return exc.status_code == 404 or (exc.status_code == 500 and "does not exist" in exc.explanation)


class PodmanRuntime(DockerRuntime):
    name = "podman"
    engine = "Podman"
    cli = "podman"

    unconfigured = f"CONTAINER_HOST is not set and {DEFAULT_SOCKET} does not exist"
    address_setting = "CONTAINER_HOST"
    # Podman 4.3's attach to a container it has yet to start reads the container's log
    # ("this container is using the 'none' log driver, cannot read logs"): its default
    # driver (journald or k8s-file) stays.
    session_log_driver = None

    def toolbox_missing_fix(self, image: str, *, standard: bool) -> str:
        return f"copy it from Docker: docker save {image} | podman load" if standard else f"podman pull {image}"

    def toolbox_rebuild_fix(self, image: str) -> str:
        return f"rebuild it: debugkit toolbox build, then docker save {image} | podman load"

    def default_address(self):
        return podman_address()

    def cli_argv(self, argv: list[str]) -> list[str]:
        """`podman run ...`: the podman CLI reaches a local rootful store itself; a
        remote service (CONTAINER_HOST) it reaches with --url."""
        address = self.resolution.address.text
        if argv[:1] != [self.cli] or address == f"unix://{DEFAULT_SOCKET}":
            return argv
        return [argv[0], "--url", address, *argv[1:]]

    @property
    def probe(self) -> ContainerProbe:
        return PodmanProbe(self.api, engine=self.engine, local=self.api.local, cli=self.cli)

    def attach(self, container_id: str, *, stdin: bool, logs: bool = False):
        from debugkit.runtimes.docker.engine import EngineError

        try:
            return super().attach(container_id, stdin=stdin, logs=logs)
        except EngineError as exc:
            if exc.status_code == 409:  # Podman creates the process here
                raise start_error(exc.explanation) from None
            raise

    def expect_exit(self, container_id: str):
        return time.time() - 1.0  # where to look for the died event, should inspect miss it

    def exit_status(self, container_id: str, waiting, *, name: str) -> int:
        from debugkit.runtimes.docker.engine import EngineError

        deadline = time.monotonic() + EXIT_POLL_SECONDS
        while time.monotonic() < deadline:
            try:
                state = self.api.inspect_container(container_id).get("State") or {}
            except EngineError as exc:
                if not gone(exc):
                    raise
                break  # already auto-removed: the event log still knows
            if not state.get("Running") and state.get("Status") not in ("running", "created", "configured"):
                return int(state.get("ExitCode", 0))
            time.sleep(0.005)
        for event in reversed(self.api.events(since=waiting, filters={"container": [container_id],
                                                                      "event": ["died"]})):
            code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
            if code is not None:
                return int(code)
        raise DebugkitError(f"lost track of sidecar {name}'s exit status")

    def resolve(self):
        """$CONTAINER_HOST or Podman's socket; Docker's contexts and DOCKER_HOST do not apply."""
        from debugkit.runtimes.docker.engine import EngineConfigError, parse_host, tls_from_env
        from debugkit.runtimes.docker.hosts import Resolution

        if self._address is not None:
            return super().resolve()
        text = self.default_address()
        if text.startswith("ssh://"):
            raise EngineConfigError(f"CONTAINER_HOST={text}: ssh:// Podman connections are not supported; "
                                    f"use Podman's socket (unix://) or tcp://")
        why = "CONTAINER_HOST" if os.environ.get("CONTAINER_HOST") else "the default Podman socket"
        return Resolution(parse_host(text, tls=tls_from_env()), why)
