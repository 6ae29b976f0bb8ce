"""Port-forward through the pod's portforward subresource (no debug container needed).

One websocket per local connection (`v4.channel.k8s.io`: data on channel 0, errors on
channel 1; the server names the port in each channel's first message). The kubelet dials
`localhost:PORT` in the pod's network namespace, so ports bound only to localhost work.
The protocol has no half-close: after the local client's EOF the relay keeps passing the
server's answer until it has been quiet for LINGER seconds or the client closes.
"""
from __future__ import annotations

import contextlib
import socket

from debugkit.core.errors import NothingListening
from debugkit.runtimes.terminal import wait_readable

DATA, ERROR = 0, 1
LINGER = 2.0


class PodPortForward:
    via = "the pod's portforward subresource"

    def __init__(self, runtime, pt):
        self.runtime = runtime
        self.pt = pt

    def _open(self, port: int):
        from debugkit.runtimes.kubernetes.errors import api_error, client_errors

        try:
            return self.runtime.api.portforward_stream(self.pt.namespace, self.pt.pod_name, [port])
        except client_errors() as exc:
            raise api_error(exc, verb="create", resource="pods/portforward", namespace=self.pt.namespace,
                            name=self.pt.pod_name) from exc

    def check(self, port: int) -> None:
        """The server dials the port as soon as the stream opens: a refusal arrives at once."""
        ws = self._open(port)
        try:
            item = ws.recv(1.0)
            while item is not None:
                channel, data = item
                if channel == ERROR and data:
                    raise NothingListening(f"nothing is listening on localhost:{port} in the pod "
                                           f"({data.decode(errors='replace').strip()[-120:]})")
                item = ws.recv(0.2)
        except EOFError:
            pass
        finally:
            ws.close(wait=0.2)

    def serve(self, conn: socket.socket, port: int) -> str | None:
        ws = self._open(port)
        local_open = True
        problem = None
        try:
            while True:
                while True:
                    try:
                        item = ws.recv(0)
                    except EOFError:
                        return problem
                    if item is None:
                        break
                    channel, data = item
                    if channel == DATA:
                        conn.sendall(data)
                    elif channel == ERROR and data:
                        problem = data.decode(errors="replace").strip()
                        return problem
                watch = [ws.fileno()] + ([conn] if local_open else [])
                readable = wait_readable(watch, None if local_open else LINGER)
                if not readable:
                    return problem  # the client has finished and the server has gone quiet
                if local_open and conn in readable:
                    data = conn.recv(65536)
                    if data:
                        ws.send(DATA, data)
                    else:
                        local_open = False
        finally:
            with contextlib.suppress(Exception):
                ws.close(wait=0.2)

    def alive(self) -> bool:
        """The pod is there and its target container runs. An API hiccup is not the
        target's death: only a missing pod or a stopped container ends the forward."""
        from debugkit.core.errors import DebugkitError, TargetNotFound

        try:
            pod = self.runtime.read_pod(self.pt.namespace, self.pt.pod_name)
        except TargetNotFound:
            return False
        except DebugkitError:
            return True
        if (pod.get("metadata") or {}).get("uid") != self.pt.uid or pod.get("status", {}).get("phase") != "Running":
            return False  # gone, or replaced by a pod of the same name
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if status.get("name") == self.pt.container:
                return "running" in (status.get("state") or {})
        return False
