"""The bundled toolbox image, checked on a real engine, offline.

Every tool runs the way debugkit's `restricted` profile runs a sidecar: as 65532:65532,
every capability dropped, no-new-privileges, a read-only root filesystem and a tmpfs
at /tmp. tcpdump is the one tool that needs more (NET_RAW, see docs/toolbox.md).
"""
from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

from debugkit import __version__
from debugkit.toolbox.build import STATIC_CURL_PATH, TOOLBOX_USER

from tests.helpers import wait_for
from tests.integration.toolbox.helpers import SUITE_LABELS, image_members

pytestmark = [pytest.mark.docker, pytest.mark.toolbox]

MAX_FULL_BYTES = 150_000_000  # the goal for the full toolbox
MAX_SLIM_BYTES = 15_000_000


# --------------------------------------------------------------------------- build


def test_rebuild_with_nothing_changed_is_fully_cached(docker_client, built_toolbox):
    from debugkit.toolbox.build import build_toolbox

    before = docker_client.api.inspect_image(built_toolbox.ref)
    lines: list[str] = []
    started = time.monotonic()
    ref = build_toolbox(
        base_image=before["Config"]["Labels"]["org.opencontainers.image.base.name"],
        progress=lines.append,
    )
    elapsed = time.monotonic() - started
    assert ref == built_toolbox.ref
    steps = _steps(lines)
    assert len(steps) > 20, "\n".join(lines)
    uncached = [s for s, out in steps if re.match(r"Step \d+/\d+ : (RUN|COPY)", s) and "Using cache" not in out]
    assert not uncached, f"steps rebuilt although nothing changed: {uncached}"
    assert elapsed < 60, f"a cached rebuild took {elapsed:.1f}s"
    after = docker_client.api.inspect_image(ref)
    revision = "org.opencontainers.image.revision"
    if after["Config"]["Labels"][revision] == before["Config"]["Labels"][revision]:
        assert after["Id"] == before["Id"], "same inputs, different image"
    print(f"\nfirst build in this session {built_toolbox.seconds:.1f}s, cached rebuild {elapsed:.1f}s")


def test_if_changed_skips_the_build_of_an_up_to_date_image(docker_client, built_toolbox):
    from debugkit.toolbox.build import INPUTS_LABEL, build_toolbox

    labels = docker_client.api.inspect_image(built_toolbox.ref)["Config"]["Labels"]
    assert labels[INPUTS_LABEL].startswith("sha256:")
    lines: list[str] = []
    ref = build_toolbox(base_image=labels["org.opencontainers.image.base.name"], if_changed=True,
                        progress=lines.append)
    assert ref == built_toolbox.ref
    assert any("is up to date" in line for line in lines), lines
    assert not any(line.startswith("Step ") for line in lines), lines


def test_stages_are_tagged_so_that_a_prune_keeps_the_cache(docker_client, built_toolbox):
    from debugkit.toolbox.build import CACHE_REPOSITORY

    tags = {t for image in docker_client.images.list(name=CACHE_REPOSITORY) for t in image.tags}
    assert {f"{CACHE_REPOSITORY}:{stage}" for stage in ("curl-build", "helper-build", "slim-rootfs", "rootfs")} <= tags


# --------------------------------------------------------------------------- image config


def test_image_user_is_numeric(docker_client, toolbox_ref, slim_ref):
    for ref in (toolbox_ref, slim_ref):
        user = docker_client.api.inspect_image(ref)["Config"]["User"]
        assert user == TOOLBOX_USER, ref
        assert all(part.isdigit() for part in user.split(":")), user


def test_oci_labels(docker_client, toolbox_ref, slim_ref):
    for ref in (toolbox_ref, slim_ref):
        labels = docker_client.api.inspect_image(ref)["Config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == __version__
        assert labels["org.opencontainers.image.revision"] not in ("", None)
        assert "org.opencontainers.image.source" in labels
    full = docker_client.api.inspect_image(toolbox_ref)["Config"]["Labels"]
    assert full["org.opencontainers.image.base.name"].startswith("debian:bookworm")


def test_image_size_within_budget(docker_client, toolbox_ref, slim_ref):
    full = docker_client.api.inspect_image(toolbox_ref)["Size"]
    slim = docker_client.api.inspect_image(slim_ref)["Size"]
    print(f"\nfull {full / 1e6:.1f} MB, slim {slim / 1e6:.1f} MB")
    assert full <= MAX_FULL_BYTES, f"full toolbox is {full / 1e6:.1f} MB"
    assert slim <= MAX_SLIM_BYTES, f"slim toolbox is {slim / 1e6:.1f} MB"


@pytest.mark.parametrize("variant", ["full", "slim"])
def test_no_setuid_or_setgid_entries_in_the_filesystem(docker_client, toolbox_ref, slim_ref, variant):
    ref = toolbox_ref if variant == "full" else slim_ref
    names = set()
    offenders = []
    for member in image_members(docker_client, ref):
        names.add(member.name)
        if member.mode & 0o6000:
            offenders.append(f"{oct(member.mode)} {member.name}")
    assert "usr/local/bin/curl" in names, "the export did not contain the image's files"
    assert not offenders


def test_find_perm_6000_finds_nothing(run):
    result = run(["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune",
                  "-o", "-perm", "/6000", "-print"], user="0:0")
    assert result.stdout == "", result
    # The scan is real: the same find locates a file we give the bit to.
    planted = run(["sh", "-c", "touch /tmp/x && chmod u+s /tmp/x && find /tmp -perm /6000"], user="0:0",
                  tmpfs={"/tmp": "rw,size=1m"})
    assert planted.stdout.strip() == "/tmp/x", planted


def test_only_tcpdump_carries_a_file_capability(docker_client, toolbox_ref):
    with_caps = []
    seen_xattrs = False
    for member in image_members(docker_client, toolbox_ref):
        if any(k.startswith("SCHILY.xattr.") for k in member.pax_headers):
            seen_xattrs = True
        if "SCHILY.xattr.security.capability" in member.pax_headers:
            with_caps.append(member.name)
    if not seen_xattrs:
        pytest.skip("this engine's export does not carry extended attributes")
    assert with_caps == ["usr/bin/tcpdump"]


def test_no_sudo(run):
    result = run(["sh", "-c", "command -v sudo doas su-exec || echo none"])
    assert result.stdout.strip() == "none", result


def test_nonroot_in_passwd_and_group(run):
    result = run(["sh", "-c", "getent passwd nonroot; getent group nonroot; id"])
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nonroot:x:65532:65532:"), result
    assert lines[0].split(":")[5] == "/home/nonroot"
    assert lines[1].startswith("nonroot:x:65532:"), result
    assert lines[2].startswith("uid=65532(nonroot) gid=65532(nonroot)"), result


@pytest.mark.parametrize("variant", ["full", "slim"])
def test_home_is_writable_on_a_read_only_root(run, slim_ref, variant):
    image = None if variant == "full" else slim_ref
    result = run(["sh", "-c", 'echo "$HOME"; echo data > "$HOME/.probe" && cat "$HOME/.probe"; '
                  'touch /etc/probe 2>/dev/null && echo root-writable || echo root-read-only'], image=image)
    assert result.exit_code == 0, result
    assert result.stdout.split() == ["/home/nonroot", "data", "root-read-only"], result


def test_restricted_sidecar_has_no_capabilities(run):
    result = run(["sh", "-c", "grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status; capsh --print | head -1"])
    caps = dict(line.split(":\t") for line in result.stdout.splitlines() if line.startswith("Cap"))
    assert caps and set(caps.values()) == {"0000000000000000"}, result


# --------------------------------------------------------------------------- tools

TOOL_CHECKS = {
    # name: (shell command, regex the stdout must match)
    "sh": ("echo hello from $0", r"hello from sh"),
    "coreutils": ("id -u; ls /usr/local/bin; printf '%s\\n' abc | wc -c; date -u +%Y",
                  r"65532\ncurl\ndebugkit-helper\ntarget\n4\n20\d\d"),  # target: the helper's `target` (held copies)
    "ps": ("ps -eo pid,user,comm", r"\b1 nonroot +sh\b"),
    "top": ("top -b -n 1 | head -n 12", r"PID +USER.*\n(.|\n)*\bnonroot\b"),
    "ip": ("ip -o addr show lo; ip route show table local | head -n 3", r"\blo +inet 127\.0\.0\.1/8"),
    "ss": (
        "nc -lk 127.0.0.1 8123 & for i in $(seq 50); do ss -Hltn | grep -q ':8123 ' && break; sleep 0.1; done; ss -Hltn",
        r"LISTEN +0 +\d+ +127\.0\.0\.1:8123\b",
    ),
    "nc": (
        "nc -l 127.0.0.1 8124 > /tmp/got & "
        "for i in $(seq 50); do echo ping-over-nc | nc -N 127.0.0.1 8124 2>/dev/null && break; sleep 0.1; done; "
        "wait; cat /tmp/got",
        r"^ping-over-nc$",
    ),
    "openssl": ("openssl version; openssl rand -hex 8; printf abc | openssl dgst -sha256",
                r"OpenSSL 3\.(.|\n)*[0-9a-f]{16}\n.*ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    "strace": ("strace -f -e trace=execve true 2>&1", r'execve\("/usr/bin/true", \["true"\](.|\n)*exited with 0'),
    "lsof": ("lsof -v 2>&1 | head -n 2; lsof -nP -a -p $$ -d cwd", r"revision: 4\.(.|\n)*\bsh +1 +nonroot +cwd +DIR\b"),
    "jq": ("""printf '{"a":[1,2,39]}' | jq -c '{sum: (.a|add)}'""", r'^\{"sum":42\}$'),
    "curl": ("curl --version", r"^curl 7\.\d+\.\d+ .*OpenSSL/3\.[\d.]+ zlib/"),
    "capsh": ("capsh --decode=0000000000002000", r"cap_net_raw"),
}


@pytest.mark.parametrize("tool", sorted(TOOL_CHECKS))
def test_tool_runs_as_65532_without_capabilities(run, tool):
    command, expected = TOOL_CHECKS[tool]
    result = run(["sh", "-c", command])
    assert result.exit_code == 0, result
    assert re.search(expected, result.stdout, re.MULTILINE), result


def test_strace_attaches_to_a_same_uid_process_without_caps(run):
    # Same UID and no Yama restriction: attaching needs no CAP_SYS_PTRACE. On kernels with
    # kernel.yama.ptrace_scope=1 this needs the `ptrace` profile (see docs/toolbox.md).
    yama = _read_host("/proc/sys/kernel/yama/ptrace_scope")
    if yama not in (None, "0"):
        pytest.skip(f"kernel.yama.ptrace_scope={yama}: attaching needs CAP_SYS_PTRACE here")
    result = run(["sh", "-c", "sleep 30 & p=$!; timeout 2 strace -p $p -e trace=none 2>&1; kill $p"])
    assert "attached" in result.stdout, result


def test_dig_and_nslookup_resolve_through_dns(run, started, network, toolbox_ref):
    # Docker's embedded DNS server on a user-defined network answers for the alias.
    name = "svc.debugkit.test"
    peer = started(toolbox_ref, ["sleep", "120"], **_alias(network, name))
    peer.reload()
    ip = peer.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    assert ip
    dig = run(["dig", "+short", name], network=network.name)
    assert dig.exit_code == 0 and dig.stdout.split() == [ip], dig
    nslookup = run(["nslookup", name], network=network.name)
    assert nslookup.exit_code == 0 and f"Address: {ip}" in nslookup.stdout, nslookup
    missing = run(["sh", "-c", "dig +short nonexistent.debugkit.test; nslookup nonexistent.debugkit.test"],
                  network=network.name)
    assert missing.exit_code != 0 and "NXDOMAIN" in missing.stdout, missing
    assert ip not in missing.stdout, missing


def test_getent_and_curl_resolve_through_etc_hosts(run):
    # The static curl resolves through glibc's built-in files and dns modules.
    result = run(["sh", "-c", "getent hosts db.debugkit.test; curl -sv -o /dev/null --connect-timeout 2 "
                  "http://db.debugkit.test:1/ 2>&1 | grep -E 'Trying|resolve'; true"],
                 extra_hosts={"db.debugkit.test": "127.0.0.1"})
    assert result.stdout.startswith("127.0.0.1"), result
    assert "Trying 127.0.0.1:1" in result.stdout and "Could not resolve" not in result.stdout, result


# --------------------------------------------------------------------------- tcpdump

TCPDUMP_CAPTURE = (
    "tcpdump -i lo -c 1 -nn -q udp port 9 >/tmp/out 2>/tmp/err & t=$!; "
    "for i in $(seq 100); do kill -0 $t 2>/dev/null || break; "
    "printf x | nc -u -w0 127.0.0.1 9 2>/dev/null; sleep 0.1; done; "
    "wait $t; rc=$?; cat /tmp/out; cat /tmp/err >&2; exit $rc"
)


def test_tcpdump_captures_with_net_raw(run):
    # The netadmin profile: NET_RAW in the bounding set, no-new-privileges off (the file
    # capability on tcpdump is what turns the bounding-set entry into a usable one).
    result = run(["sh", "-c", TCPDUMP_CAPTURE], security_opt=[], cap_add=["NET_RAW"])
    assert result.exit_code == 0, result
    assert re.search(r"IP 127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.9: UDP", result.stdout), result
    listing = run(["tcpdump", "-D"], security_opt=[], cap_add=["NET_RAW"])
    assert listing.exit_code == 0 and "lo" in listing.stdout, listing


def test_tcpdump_is_refused_without_net_raw(run):
    result = run(["sh", "-c", "tcpdump --version; echo rc=$?"])
    assert "rc=126" in result.stdout and "Operation not permitted" in result.stderr, result


def test_tcpdump_cannot_capture_under_no_new_privileges(run):
    result = run(["sh", "-c", TCPDUMP_CAPTURE], cap_add=["NET_RAW"])
    assert result.exit_code != 0 and "permission" in result.stderr.lower(), result


# --------------------------------------------------------------------------- static curl


def test_static_curl_is_not_a_dynamic_executable(run):
    result = run(["sh", "-c", f"ldd {STATIC_CURL_PATH}; echo rc=$?; wc -c < {STATIC_CURL_PATH}"])
    assert "not a dynamic executable" in result.stdout + result.stderr, result
    size = int(result.stdout.split()[-1])
    print(f"\nstatic curl: {size} bytes ({size / 1e6:.2f} MB)")
    # The same check proves ldd does report shared objects for a dynamic binary.
    dynamic = run(["ldd", "/usr/bin/jq"])
    assert "libjq" in dynamic.stdout, dynamic


@pytest.fixture(scope="module")
def tls_material():
    return _make_test_pki("tls.debugkit.test")


@pytest.fixture(scope="module")
def scratch_curl(docker_client, toolbox_ref, tls_material, sweep):
    """The docs' recipe: static curl + CA bundle + passwd copied into a FROM scratch image."""
    dockerfile = f"""
FROM {toolbox_ref} AS toolbox
FROM scratch
COPY --from=toolbox {STATIC_CURL_PATH} {STATIC_CURL_PATH}
COPY --from=toolbox /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY test-ca.pem /test-ca.pem
USER 65532:65532
ENTRYPOINT ["{STATIC_CURL_PATH}"]
"""
    files = {
        "Dockerfile": dockerfile.encode(),
        "passwd": b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
        "group": b"root:x:0:\nnonroot:x:65532:\n",
        "test-ca.pem": tls_material["ca"],
    }
    tag = f"debugkit-test/scratch-curl:{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True,
                               labels=SUITE_LABELS)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_static_curl_runs_in_a_scratch_image_as_65532(run, scratch_curl):
    result = run(["--version"], image=scratch_curl)
    assert result.exit_code == 0, result
    assert re.match(r"curl 7\.\d+\.\d+ .*OpenSSL/3", result.stdout), result


@pytest.fixture
def tls_server(started, network, toolbox_ref, tls_material):
    """openssl s_server from the toolbox, as 65532, on tls.debugkit.test:8443."""
    name = "tls.debugkit.test"
    ctr = started(
        toolbox_ref,
        ["openssl", "s_server", "-accept", "8443", "-cert", "/srv/tls/server.pem",
         "-key", "/srv/tls/server.key", "-www"],
        files={"srv/tls/server.pem": tls_material["cert"], "srv/tls/server.key": tls_material["key"]},
        user="65532:65532", cap_drop=["ALL"], **_alias(network, name),
    )
    wait_for(lambda: b"ACCEPT" in ctr.logs(), timeout=20, what="openssl s_server to accept")
    return f"https://{name}:8443/"


def test_https_to_a_local_server_with_a_test_ca(run, scratch_curl, tls_server, network):
    common = dict(image=scratch_curl, network=network.name)
    ok = run(["-sS", "--max-time", "10", "--cacert", "/test-ca.pem", "-w", "\nhttp=%{http_code}", tls_server],
             **common)
    assert ok.exit_code == 0, ok
    assert "s_server" in ok.stdout and ok.stdout.rstrip().endswith("http=200"), ok

    # Without the test CA, the compiled-in bundle path is used, and it does not trust it.
    untrusted = run(["-sS", "-v", "--max-time", "10", "-o", "/dev/null", tls_server], **common)
    assert untrusted.exit_code == 60, untrusted
    assert "CAfile: /etc/ssl/certs/ca-certificates.crt" in untrusted.stderr, untrusted

    # The name is verified too: the same server under a name the certificate lacks fails.
    ip = _container_ip_by_alias(run, network, "tls.debugkit.test")
    mismatch = run(["-sS", "--max-time", "10", "--cacert", "/test-ca.pem", "-o", "/dev/null",
                    "--resolve", f"wrong.invalid:8443:{ip}", "https://wrong.invalid:8443/"],
                   **common)
    assert mismatch.exit_code == 60, mismatch


def test_https_from_the_full_toolbox(run, tls_server, network, tls_material):
    result = run(["sh", "-c", 'printf "%s" "$CA" > /tmp/ca.pem && curl -sS --max-time 10 --cacert /tmp/ca.pem '
                  f'-o /dev/null -w "%{{http_code}}" {tls_server}'],
                 network=network.name, environment={"CA": tls_material["ca"].decode()})
    assert result.exit_code == 0 and result.stdout == "200", result


# --------------------------------------------------------------------------- slim


SLIM_CHECKS = {
    "sh": ("id -u; echo $HOME", r"^65532\n/home/nonroot$"),
    "busybox applets": ("ps; ip -o addr show lo; netstat -ltn | head -n 1; wget --help 2>&1 | head -n 1",
                        r"PID(.|\n)*\blo +inet 127\.0\.0\.1(.|\n)*Active Internet"),
    "curl": ("curl --version", r"^curl 7\."),
}


@pytest.mark.parametrize("check", sorted(SLIM_CHECKS))
def test_slim_variant_runs_restricted(run, slim_ref, check):
    command, expected = SLIM_CHECKS[check]
    result = run(["sh", "-c", command], image=slim_ref)
    assert result.exit_code == 0, result
    assert re.search(expected, result.stdout, re.MULTILINE), result


# --------------------------------------------------------------------------- helpers


def _steps(lines: list[str]) -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("Step "):
            steps.append((line, ""))
        elif steps:
            steps[-1] = (steps[-1][0], steps[-1][1] + line + "\n")
    return steps


def _label(client, ref: str, key: str) -> str:
    return client.api.inspect_image(ref)["Config"]["Labels"][key]


def _revision_of(image_id: str, client) -> str:
    return client.api.inspect_image(image_id)["Config"]["Labels"]["org.opencontainers.image.revision"]


def _alias(network, name: str) -> dict:
    """Container options that attach to network with a DNS alias."""
    endpoint = network.client.api.create_endpoint_config(aliases=[name])
    return {"network": network.name, "networking_config": {network.name: endpoint}}


def _container_ip_by_alias(run, network, name: str) -> str:
    result = run(["sh", "-c", f"getent hosts {name} | cut -d' ' -f1"], network=network.name)
    ip = result.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip), result
    return ip


def _read_host(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _make_test_pki(hostname: str) -> dict[str, bytes]:
    """A throwaway CA and a server certificate for hostname (PEM), valid for a day."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        return _make_test_pki_with_openssl(hostname)

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "debugkit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca": ca.public_bytes(pem),
        "cert": cert.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }


def _make_test_pki_with_openssl(hostname: str) -> dict[str, bytes]:  # pragma: no cover - fallback
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("neither the cryptography package nor an openssl binary is available")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def sh(*args: str) -> None:
            subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

        sh("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
           "-subj", "/CN=debugkit test CA", "-keyout", "ca.key", "-out", "ca.pem",
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        sh("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={hostname}",
           "-keyout", "server.key", "-out", "server.csr")
        (d / "ext").write_text(f"subjectAltName=DNS:{hostname}\nextendedKeyUsage=serverAuth\n")
        sh("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
           "-days", "1", "-extfile", "ext", "-out", "server.pem")
        return {"ca": (d / "ca.pem").read_bytes(), "cert": (d / "server.pem").read_bytes(),
                "key": (d / "server.key").read_bytes()}
