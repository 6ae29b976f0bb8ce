"""Bad input, table-driven, through the real CLI: each case gets its exact exit code and
one line on stderr with no traceback, and leaves nothing behind (no container, no
temporary file, no changed file at the report path)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import leaked_sidecars, wait_for

pytestmark = pytest.mark.docker

USAGE, INPUT, FILE, NOT_FOUND, NOT_RUNNING, UNREACHABLE, IMAGE, AUDIT, PIPE = 2, 64, 65, 66, 67, 69, 71, 73, 141
PATH_MISSING, NOT_DIR, SPECIAL = 81, 84, 87

NESTED = "a:\n" + "".join("  " * i + "- \n" for i in range(1, 40))
BOMB = 'a: &a ["x","x"]\nb: [*a,*a]\n'
RUNBOOK = "name: x\nsteps:\n  - name: a\n    run: 'true'\n"

# (id, argv with {T} = a running target, {S} = a stopped one, {D} = a temp dir; env; files; exit code)
CASES = [
    # --user
    ("user letters", ["attach", "{T}", "--user", "abc", "--", "true"], {}, {}, INPUT),
    ("user empty", ["attach", "{T}", "--user", "", "--", "true"], {}, {}, INPUT),
    ("user arabic digits", ["attach", "{T}", "--user", "\u0663\u0663", "--", "true"], {}, {}, INPUT),
    ("user superscript", ["attach", "{T}", "--user", "\u00b2", "--", "true"], {}, {}, INPUT),
    ("user above int32", ["attach", "{T}", "--user", "2147483648", "--", "true"], {}, {}, INPUT),
    ("user three parts", ["attach", "{T}", "--user", "1:2:3", "--", "true"], {}, {}, INPUT),
    ("user negative", ["attach", "{T}", "--user=-1", "--", "true"], {}, {}, INPUT),
    ("user gid above int32", ["attach", "{T}", "--user", "1:99999999999", "--", "true"], {}, {}, INPUT),
    # resources
    ("memory 1 byte", ["attach", "{T}", "--memory", "1", "--", "true"], {}, {}, INPUT),
    ("memory unit", ["attach", "{T}", "--memory", "12x", "--", "true"], {}, {}, INPUT),
    ("memory empty", ["attach", "{T}", "--memory", "", "--", "true"], {}, {}, INPUT),
    ("memory huge", ["attach", "{T}", "--memory", "99999999999999999999g", "--", "true"], {}, {}, INPUT),
    ("pids zero", ["attach", "{T}", "--pids-limit", "0", "--", "true"], {}, {}, INPUT),
    ("pids huge", ["attach", "{T}", "--pids-limit", "99999999999999999999", "--", "true"], {}, {}, INPUT),
    ("pids negative", ["attach", "{T}", "--pids-limit=-5", "--", "true"], {}, {}, INPUT),
    ("pids letters", ["attach", "{T}", "--pids-limit", "many", "--", "true"], {}, {}, INPUT),
    ("cpus nan", ["attach", "{T}", "--cpus", "nan", "--", "true"], {}, {}, INPUT),
    ("cpus inf", ["attach", "{T}", "--cpus", "inf", "--", "true"], {}, {}, INPUT),
    ("cpus more than the host", ["attach", "{T}", "--cpus", "1000", "--", "true"], {}, {}, INPUT),
    ("cpus rounds to no limit", ["attach", "{T}", "--cpus", "1e-12", "--", "true"], {}, {}, INPUT),
    ("cpus negative", ["attach", "{T}", "--cpus=-1", "--", "true"], {}, {}, INPUT),
    ("cpus empty", ["attach", "{T}", "--cpus", "", "--", "true"], {}, {}, INPUT),
    ("timeout nan", ["attach", "{T}", "--timeout", "nan", "--", "true"], {}, {}, INPUT),
    ("timeout zero", ["attach", "{T}", "--timeout", "0", "--", "true"], {}, {}, INPUT),
    ("timeout huge", ["attach", "{T}", "--timeout", "1e400", "--", "true"], {}, {}, INPUT),
    # images
    ("image empty", ["attach", "{T}", "--image", "", "--", "true"], {}, {}, INPUT),
    ("image space", ["attach", "{T}", "--image", "a b", "--", "true"], {}, {}, INPUT),
    ("image newline", ["attach", "{T}", "--image", "x\ny", "--", "true"], {}, {}, INPUT),
    ("image upper case", ["attach", "{T}", "--image", "Debug/Kit", "--", "true"], {}, {}, INPUT),
    ("image two tags", ["attach", "{T}", "--image", "x:1:2", "--", "true"], {}, {}, INPUT),
    ("image escape sequence", ["attach", "{T}", "--image", "x\x1b[2J", "--", "true"], {}, {}, INPUT),
    ("image missing", ["attach", "{T}", "--image", "debugkit-test/absent:1", "--", "true"], {}, {}, IMAGE),
    # profiles and --custom
    ("profile unknown", ["attach", "{T}", "--profile", "godmode", "--", "true"], {}, {}, USAGE),
    ("inspect profile unknown", ["inspect", "{T}", "--profile", "godmode"], {}, {}, INPUT),
    ("custom missing", ["attach", "{T}", "--custom", "{D}/nope.yaml", "--", "true"], {}, {}, FILE),
    ("custom binary", ["attach", "{T}", "--custom", "{D}/bin.yaml", "--", "true"], {},
     {"bin.yaml": b"\x7fELF\x00\x01\x02"}, FILE),
    ("custom nested", ["attach", "{T}", "--custom", "{D}/deep.yaml", "--", "true"], {}, {"deep.yaml": NESTED},
     FILE),
    ("custom alias bomb", ["attach", "{T}", "--custom", "{D}/bomb.yaml", "--", "true"], {},
     {"bomb.yaml": BOMB}, FILE),
    ("custom a list", ["attach", "{T}", "--custom", "{D}/list.yaml", "--", "true"], {}, {"list.yaml": "- a\n"},
     FILE),
    ("custom on docker", ["attach", "{T}", "--custom", "{D}/ok.yaml", "--", "true"], {},
     {"ok.yaml": "workingDir: /tmp\n"}, INPUT),
    # targets
    ("target empty", ["attach", "", "--", "true"], {}, {}, INPUT),
    ("target bad chars", ["attach", "bad name!", "--", "true"], {}, {}, INPUT),
    ("target pod slash", ["attach", "pod/", "--", "true"], {}, {}, INPUT),
    ("target k8s short", ["attach", "k8s://ns", "--", "true"], {}, {}, INPUT),
    ("target pod upper", ["attach", "pod/UPPER", "--", "true"], {}, {}, INPUT),
    ("namespace on docker", ["attach", "{T}", "-n", "prod", "--", "true"], {}, {}, INPUT),
    ("namespace bad", ["attach", "pod/x", "-n", "Bad_NS", "--", "true"], {}, {}, INPUT),
    ("target missing", ["attach", "debugkit-test-absent-ctr", "--", "true"], {}, {}, NOT_FOUND),
    ("target stopped", ["attach", "{S}", "--", "true"], {}, {}, NOT_RUNNING),
    ("target is a sidecar scheme typo", ["attach", "dockr://web", "--", "true"], {}, {}, INPUT),
    # connection configuration
    ("docker host bad ipv6", ["attach", "{T}", "--", "true"], {"DOCKER_HOST": "tcp://[::1"}, {}, INPUT),
    # TLS verification asked for with no certificates where DOCKER_CERT_PATH says (the docker CLI
    # refuses it too). An https:// host without DOCKER_TLS_VERIFY verifies against the system's
    # roots, as the docker CLI does: that is not bad input.
    ("docker host tls without certs", ["attach", "{T}", "--", "true"],
     {"DOCKER_HOST": "tcp://127.0.0.1:1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "{D}/no-certs"}, {}, INPUT),
    ("docker host scheme", ["attach", "{T}", "--", "true"], {"DOCKER_HOST": "ftp://x"}, {}, INPUT),
    ("docker socket missing", ["attach", "{T}", "--", "true"], {"DOCKER_HOST": "unix:///nonexistent/d.sock"}, {},
     UNREACHABLE),
    ("kubeconfig binary", ["attach", "pod/x", "--", "true"], {"KUBECONFIG": "{D}/kc"}, {"kc": b"\x00\x01\xff"},
     FILE),
    ("kubeconfig malformed", ["attach", "pod/x", "--", "true"], {"KUBECONFIG": "{D}/kc"},
     {"kc": "clusters: [\n"}, FILE),
    # A context that does not exist is a flag's value, for Kubernetes as for Docker: 64 both.
    ("kubeconfig context missing", ["attach", "pod/x", "--context", "nope", "--", "true"],
     {"KUBECONFIG": "{D}/kc"}, {"kc": "apiVersion: v1\nkind: Config\ncontexts: []\n"}, INPUT),
    ("docker context missing", ["attach", "{T}", "--docker-context", "nope", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker"}, {}, INPUT),
    ("config unknown key", ["attach", "{T}", "--", "true"], {"DEBUGKIT_CONFIG": "{D}/c.yaml"},
     {"c.yaml": "bogus: 1\n"}, 74),
    ("config bad limit", ["attach", "{T}", "--", "true"], {"DEBUGKIT_CONFIG": "{D}/c.yaml"},
     {"c.yaml": "limits: {memory: 1}\n"}, 74),
    ("config asks for sysadmin", ["attach", "{T}", "--", "true"], {"DEBUGKIT_CONFIG": "{D}/c.yaml"},
     {"c.yaml": "profile: sysadmin\n"}, 74),
    ("config missing", ["--config", "{D}/absent.yaml", "attach", "{T}", "--", "true"], {}, {}, 74),
    ("config binary", ["attach", "{T}", "--", "true"], {"DEBUGKIT_CONFIG": "{D}/c.yaml"}, {"c.yaml": b"\x00\x01"},
     74),
    ("environment memory", ["attach", "{T}", "--", "true"], {"DEBUGKIT_MEMORY": "lots"}, {}, INPUT),
    ("kubeconfig missing", ["attach", "pod/x", "--kubeconfig", "{D}/absent", "--", "true"], {}, {}, INPUT),
    # audit, gc
    ("since overflow", ["audit", "--since", "99999999999999999999d"], {}, {}, INPUT),
    ("since empty", ["audit", "--since", ""], {}, {}, INPUT),
    ("since words", ["audit", "--since", "yesterday"], {}, {}, INPUT),
    ("older-than unit", ["gc", "--older-than", "5x", "--runtime", "docker"], {}, {}, INPUT),
    ("older-than overflow", ["gc", "--older-than", "99999999999999999999d", "--runtime", "docker"], {}, {}, INPUT),
    ("ps runtime unknown", ["ps", "--runtime", "lxc"], {}, {}, USAGE),
    # runbooks
    ("validate proc file", ["runbook", "validate", "/proc/self/environ"], {}, {}, FILE),
    ("validate missing", ["runbook", "validate", "{D}/absent.yaml"], {}, {}, INPUT),
    ("validate a directory", ["runbook", "validate", "{D}/"], {}, {}, INPUT),
    ("validate alias bomb", ["runbook", "validate", "{D}/bomb.yaml"], {}, {"bomb.yaml": BOMB}, FILE),
    ("validate binary", ["runbook", "validate", "{D}/bin.yaml"], {}, {"bin.yaml": b"name: x\x00\n"}, FILE),
    ("runbook unknown name", ["runbook", "run", "no-such-runbook", "{T}"], {}, {}, INPUT),
    ("runbook var undeclared", ["runbook", "run", "http-health", "{T}", "--var", "NOPE=1"], {}, {}, FILE),
    ("runbook var malformed", ["runbook", "run", "http-health", "{T}", "--var", "bad"], {}, {}, INPUT),
    ("runbook asks for sysadmin", ["runbook", "run", "{D}/priv.yaml", "{T}"], {},
     {"priv.yaml": RUNBOOK.replace("steps:", "profile: sysadmin\nsteps:")}, FILE),
    ("runbook asks for ptrace, other flag", ["runbook", "run", "{D}/priv.yaml", "{T}", "--profile", "netadmin"], {},
     {"priv.yaml": RUNBOOK.replace("steps:", "profile: ptrace\nsteps:")}, FILE),
    ("report to a device", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "/dev/full"], {},
     {"rb.yaml": RUNBOOK}, INPUT),
    ("report through a symlink", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "{D}/link.md"], {},
     {"rb.yaml": RUNBOOK, "real.md": "keep me\n", "link.md": ("symlink", "real.md")}, INPUT),
    ("report to a directory", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "{D}/out/"], {},
     {"rb.yaml": RUNBOOK}, INPUT),
    ("report empty", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", ""], {}, {"rb.yaml": RUNBOOK}, INPUT),
    ("report over a proc file", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "/proc/self/environ"], {},
     {"rb.yaml": RUNBOOK}, INPUT),
    ("report in sys", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "/sys/kernel/debugkit.md"], {},
     {"rb.yaml": RUNBOOK}, INPUT),
    ("report to a fifo", ["runbook", "run", "{D}/rb.yaml", "{T}", "--report", "{D}/fifo"], {},
     {"rb.yaml": RUNBOOK, "fifo": ("fifo",)}, INPUT),
    # flags for another runtime, fleets
    ("memory on a pod", ["attach", "pod/x", "--memory", "64m", "--", "true"], {}, {}, INPUT),
    ("cpus on a pod", ["attach", "k8s://shop/x", "--cpus", "1", "--", "true"], {}, {}, INPUT),
    ("via portforward on a container", ["port-forward", "--via", "portforward", "{T}", "8080"], {}, {}, INPUT),
    ("parallel zero", ["attach", "-l", "app=x", "--parallel", "0", "--", "true"], {}, {}, INPUT),
    ("parallel above 64", ["attach", "{T}", "--parallel", "65", "--", "true"], {}, {}, INPUT),
    ("parallel words", ["runbook", "run", "processes", "{T}", "--parallel", "many"], {}, {}, INPUT),
    ("selector with a target", ["attach", "-l", "app=x", "{T}", "--", "true"], {}, {}, INPUT),
    ("selector with a pod", ["attach", "-l", "app=x", "pod/web", "--", "id"], {}, {}, INPUT),
    ("filter with a target", ["attach", "--filter", "label=x", "{T}", "--", "true"], {}, {}, INPUT),
    # issue 27, item 12: an audit log that is not a regular file is refused before anything is launched
    ("audit log a FIFO", ["attach", "{T}", "--", "true"], {"DEBUGKIT_AUDIT_LOG": "{D}/fifo"}, {"fifo": ("fifo",)},
     AUDIT),
    ("audit log /dev/full", ["attach", "{T}", "--", "true"], {"DEBUGKIT_AUDIT_LOG": "/dev/full"}, {}, AUDIT),
    ("audit log /dev/null", ["attach", "{T}", "--", "true"], {"DEBUGKIT_AUDIT_LOG": "/dev/null"}, {}, AUDIT),
    ("audit log /dev/zero", ["audit"], {"DEBUGKIT_AUDIT_LOG": "/dev/zero"}, {}, AUDIT),
    ("audit log a directory", ["attach", "{T}", "--", "true"], {"DEBUGKIT_AUDIT_LOG": "{D}"}, {}, AUDIT),
    ("audit log a symlink", ["attach", "{T}", "--", "true"], {"DEBUGKIT_AUDIT_LOG": "{D}/link"},
     {"real.jsonl": "", "link": ("symlink", "real.jsonl")}, AUDIT),
    # issue 27, item 10: nested JSON where debugkit reads JSON is one line, not a RecursionError
    ("docker context meta.json nested", ["attach", "{T}", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker", "DOCKER_CONTEXT": "deep"},
     {f"docker/contexts/meta/{hashlib.sha256(b'deep').hexdigest()}/meta.json": "[" * 100000 + "]" * 100000}, INPUT),
    ("docker context meta.json a FIFO", ["attach", "{T}", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker", "DOCKER_CONTEXT": "fifo"},
     {f"docker/contexts/meta/{hashlib.sha256(b'fifo').hexdigest()}/meta.json": ("fifo",)}, INPUT),
    # cp and port-forward (issue 27, 3.2, 3.5, 3.16)
    ("cp out onto /dev/null", ["cp", "{T}:/server", "/dev/null"], {}, {}, SPECIAL),
    ("cp out onto /dev/null, --force", ["cp", "--force", "{T}:/server", "/dev/null"], {}, {}, SPECIAL),
    ("cp out onto a fifo, --force", ["cp", "--force", "{T}:/server", "{D}/fifo"], {}, {"fifo": ("fifo",)}, SPECIAL),
    ("cp out of a device", ["cp", "{T}:/dev/zero", "{D}/zero"], {}, {}, SPECIAL),
    ("cp out of a device into a dir", ["cp", "{T}:/dev/null", "{D}"], {}, {}, SPECIAL),
    ("cp in /dev/zero", ["cp", "--write", "/dev/zero", "{T}:/tmp/zero"], {}, {}, SPECIAL),
    ("cp in a fifo", ["cp", "--write", "{D}/fifo", "{T}:/tmp/fifo"], {}, {"fifo": ("fifo",)}, SPECIAL),
    ("cp in a missing file", ["cp", "--write", "{D}/absent", "{T}:/tmp/x"], {}, {}, PATH_MISSING),
    ("cp out to a link to a file, slash", ["cp", "{T}:/server", "{D}/flink/"], {},
     {"file": "x", "flink": ("symlink", "file")}, NOT_DIR),
    ("port-forward address empty", ["port-forward", "{T}", "8080", "--address", ""], {}, {}, INPUT),
    ("port-forward address a name", ["port-forward", "{T}", "8080", "--address", "example.com"], {}, {}, INPUT),
    # usage
    ("attach without target", ["attach"], {}, {}, USAGE),
    ("attach unknown option", ["attach", "{T}", "--bogus", "--", "true"], {}, {}, USAGE),
    ("toolbox variant", ["toolbox", "ref", "--variant", "huge"], {}, {}, USAGE),
]


@pytest.fixture(scope="module")
def targets(docker_client, fixture_images):
    from tests.helpers import labels_for_test

    running = docker_client.containers.run(fixture_images["named-user"], name=f"dk-bad-{uuid.uuid4().hex[:8]}",
                                           detach=True, labels=labels_for_test())
    stopped = docker_client.containers.create(fixture_images["named-user"], name=f"dk-bad-{uuid.uuid4().hex[:8]}",
                                              labels=labels_for_test())
    wait_for(lambda: b"listening on" in running.logs(), timeout=20, what="the target to listen")
    yield running.name, stopped.name
    for ctr in (running, stopped):
        ctr.remove(force=True)


def materialize(directory: Path, files: dict) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "symlink":
            path.symlink_to(directory / content[1])
        elif isinstance(content, tuple) and content[0] == "fifo":
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def snapshot(directory: Path) -> dict:
    """Every entry of the case's directory with what identifies its content."""
    out = {}
    for path in sorted(directory.rglob("*")):
        st = os.lstat(path)
        body = path.read_bytes() if path.is_file() and not path.is_symlink() else os.readlink(path) \
            if path.is_symlink() else None
        out[str(path.relative_to(directory))] = (st.st_mode, body)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, targets, docker_client, tmp_path, audit_log):
    _name, argv, env, files, expected = case
    running, stopped = targets
    work = tmp_path / "case"
    work.mkdir()
    materialize(work, files)
    subst = {"{T}": running, "{S}": stopped, "{D}": str(work)}

    def fill(text: str) -> str:
        for key, value in subst.items():
            text = text.replace(key, value)
        return text

    before_files = snapshot(work)
    before_sidecars = {c.id for c in leaked_sidecars(docker_client)}
    private_tmp = tmp_path / "tmp"  # what debugkit creates as temporary files lands here
    private_tmp.mkdir()
    full_env = {**os.environ, "TMPDIR": str(private_tmp), **{k: fill(v) for k, v in env.items()}}
    result = subprocess.run([sys.executable, "-m", "debugkit", *[fill(a) for a in argv]], env=full_env,
                            cwd=work, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == expected, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("debugkit: "), stderr
    assert "\x1b" not in stderr  # a value that came back from the input is escaped
    assert result.stdout == b""
    # Nothing left behind: no sidecar, no temporary file, no changed file.
    wait_for(lambda: {c.id for c in leaked_sidecars(docker_client)} <= before_sidecars, timeout=15,
             what="no sidecar left")
    assert snapshot(work) == before_files
    assert list(private_tmp.iterdir()) == []


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def test_closed_stdout_is_one_line_and_its_own_code(targets):
    running, _ = targets
    result = subprocess.run(f"{sys.executable} -m debugkit attach {running} -- true >&-", shell=True,
                            capture_output=False, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == PIPE and len(lines) == 1 and "stdout is closed" in lines[0], lines


def test_closed_stdin_reads_as_empty(targets):
    running, _ = targets
    result = subprocess.run(f"{sys.executable} -m debugkit attach -i {running} -- wc -c <&-", shell=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"0"]
