"""A fake exec credential plugin (the runner writes it out with this interpreter as its #!).

It appends what it was given to $CONFORMANCE_RECORD (KUBERNETES_EXEC_INFO, its args, the
variables named in --show-env, and whether its stdin is a terminal), then acts as told:
  --token T          print an ExecCredential with token T
  --cert             print one with the conformance CA's client-b certificate and key
  --api VERSION      the apiVersion it answers (default: the one in KUBERNETES_EXEC_INFO)
  --exit N           print "plugin failed: denied" on stderr and exit N
  --garbage          print something that is not JSON
"""
import json
import os
import sys

args = sys.argv[1:]


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


info = os.environ.get("KUBERNETES_EXEC_INFO", "")
record = {"args": args, "exec_info": json.loads(info) if info else None, "stdin_tty": os.isatty(0),
          "env": {k: os.environ.get(k) for k in (opt("--show-env", "") or "").split(",") if k}}
with open(os.environ["CONFORMANCE_RECORD"], "a") as fh:
    fh.write(json.dumps(record) + "\n")
if "--exit" in args:
    sys.stderr.write("plugin failed: denied\n")
    sys.exit(int(opt("--exit")))
if "--garbage" in args:
    print("this is not an ExecCredential")
    sys.exit(0)
api = opt("--api") or (json.loads(info)["apiVersion"] if info else "client.authentication.k8s.io/v1")
status = {}
if "--token" in args:
    status["token"] = opt("--token")
if "--cert" in args:
    pki = os.environ["CONFORMANCE_PKI"]
    status["clientCertificateData"] = open(os.path.join(pki, "client-b.crt")).read()
    status["clientKeyData"] = open(os.path.join(pki, "client-b.key")).read()
print(json.dumps({"apiVersion": api, "kind": "ExecCredential", "status": status}))
