"""A fake `ssh` (the runner writes it out as bin/ssh): it records its command line and
connects its stdin and stdout to the fake Docker engine's unix socket, as
`ssh HOST docker system dial-stdio` connects them to the remote engine."""
import json
import os
import socket
import sys
import threading

with open(os.environ["CONFORMANCE_SSH_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
engine = socket.socket(socket.AF_UNIX)
engine.connect(os.environ["CONFORMANCE_DOCKER_SOCK"])


def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            engine.shutdown(socket.SHUT_WR)
            return
        engine.sendall(data)


threading.Thread(target=upstream, daemon=True).start()
while True:
    data = engine.recv(65536)
    if not data:
        break
    os.write(1, data)
