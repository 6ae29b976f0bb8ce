"""An image's passwd and group, read as the runtimes read them: streamed, bounded, and
never guessed past a bound (issue 27, items 8 and 9)."""
from __future__ import annotations

import io
import tarfile

import pytest

from debugkit.core import identity as ident
from debugkit.core import userdb
from debugkit.core.errors import IdentityUnresolved
from debugkit.runtimes.docker.probe import ContainerProbe, TargetInfo

NONROOT = b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"


def big_passwd(size: int) -> bytes:
    """`size` bytes of ordinary entries, then nonroot: the runtime finds it at the end."""
    filler = b"".join(b"user%d:x:%d:%d::/:/sbin/nologin\n" % (i, 100000 + i, 100000 + i) for i in range(60000))
    return (filler * (size // len(filler) + 1))[:size].rsplit(b"\n", 1)[0] + b"\n" + NONROOT


def chunked(data: bytes, size: int = 1 << 16):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_a_passwd_over_a_mebibyte_is_streamed_and_only_the_wanted_entries_are_kept():
    data = big_passwd(3 << 20)
    wanted = userdb.Wanted.for_user("65532")
    users = userdb.scan_passwd(chunked(data), wanted)
    assert [u.name for u in users] == ["nonroot"]
    got = ident.runtime_user("65532", userdb.UserDb(users, (), True, False, wanted))
    assert (got.uid, got.gid, got.user_name) == (65532, 65532, "nonroot")


@pytest.mark.parametrize("length,readable", [(userdb.MAX_PASSWD_LINE - 1, True), (userdb.MAX_PASSWD_LINE, False)])
def test_a_passwd_line_as_long_as_go_scanners_limit_is_what_the_runtimes_refuse(length, readable):
    data = b"a:x:1:1:" + b"g" * (length - 8) + b"\n" + NONROOT
    scan = lambda: userdb.scan_passwd(chunked(data, 4096), userdb.Wanted.for_user("65532"))  # noqa: E731
    if readable:
        assert scan()[0].gid == 65532
    else:
        with pytest.raises(userdb.Unreadable, match="line of 65536 bytes or more"):
            scan()


def test_a_file_past_the_bound_is_unreadable_not_truncated():
    with pytest.raises(userdb.Unreadable, match="larger than 1 MiB"):
        list(userdb.lines(chunked(b"x\n" * (1 << 20)), max_line=100, what="f", max_bytes=1 << 20))


def test_group_skips_comments_and_passwd_does_not_as_runc_does():
    db = userdb.from_text("#root:x:7:7::/:/bin/sh\n  app:x:10:20::/:/bin/sh  \n", "#app:x:1:app\nwheel:x:30:app\n")
    assert db.user_named("#root").uid == 7 and db.user_named("app").gid == 20
    assert db.memberships("app") == (30,)


@pytest.mark.parametrize("field,value", [(b"+5", 5), (b"-3", -3), (b"x", 0), (b"", 0), (b"\xc2\xb2", 0),
                                         (b"99999999999999999999", (1 << 63) - 1)])
def test_numeric_fields_are_strconv_atoi_with_the_error_ignored(field, value):
    assert userdb.go_atoi(field) == value


def test_a_group_read_before_its_user_is_narrowed_once_the_user_is_known():
    wanted = userdb.Wanted.for_user("65532")
    groups = userdb.scan_group([b"wheel:x:10:nonroot,other\nstaff:x:20:other\nroot:x:0:\n"], wanted, None)
    narrowed = userdb.narrow_groups(groups, wanted, ["nonroot"])
    assert [(g.name, g.members) for g in narrowed] == [("wheel", ("nonroot",))]


# -- the Docker probe streams /etc through the archive API ----------------------------------------------------

class Archive:
    """The engine's archive API for a few paths: a tar of one member each (a file or a link)."""

    def __init__(self, files: dict[str, bytes | str]):
        self.files = files

    def get_archive_stream(self, container, path):
        from debugkit.runtimes.docker.engine import EngineNotFound

        if path not in self.files:
            raise EngineNotFound(404, f"no such file: {path}")
        content = self.files[path]
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(path.rsplit("/", 1)[1])
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        raw.seek(0)
        return raw, raw  # the body, and what the probe closes


def target(user: str) -> TargetInfo:
    return TargetInfo(id="c1", name="web", image="img", image_id="sha256:1", pid=0, status="running",
                      configured_user=user)


def test_the_probe_resolves_a_user_in_a_three_mebibyte_passwd_through_a_link():
    probe = ContainerProbe(Archive({"/etc/passwd": "../usr/share/passwd", "/usr/share/passwd": big_passwd(3 << 20),
                                    "/etc/group": b"nonroot:x:65532:\n"}), local=False)
    got = probe.configured_identity(target("65532"))
    assert (got.uid, got.gid, got.groups) == (65532, 65532, (65532,))


def test_an_unreadable_passwd_makes_the_configured_identity_uncertain_with_the_user_hint():
    line = b"x:x:1:1:" + b"g" * userdb.MAX_PASSWD_LINE + b"\n"
    probe = ContainerProbe(Archive({"/etc/passwd": line + NONROOT}), local=False)
    info = target("65532")
    with pytest.raises(IdentityUnresolved, match="uncertain") as raised:
        probe.configured_identity(info)
    assert "--user" in str(raised.value)
    # --user UID alone needs that passwd too; --user UID:GID does not.
    with pytest.raises(IdentityUnresolved):
        probe.resolve_identity(info, _flag("65532"), [])
    assert probe.resolve_identity(info, _flag("65532:65532"), []).gid == 65532


def test_an_image_without_passwd_runs_a_bare_uid_with_gid_0():
    probe = ContainerProbe(Archive({}), local=False)
    got = probe.configured_identity(target("65532"))
    assert (got.uid, got.gid) == (65532, 0)
    assert probe.resolve_identity(target("0"), _flag("65532"), []).gid == 0


def test_an_endless_chain_of_links_is_uncertain():
    probe = ContainerProbe(Archive({"/etc/passwd": "/etc/passwd"}), local=False)
    with pytest.raises(IdentityUnresolved, match="symbolic links"):
        probe.configured_identity(target("65532"))


def _flag(text: str):
    from debugkit.core.options import UserOverride

    uid, gid = ident.parse_user_flag(text)
    return UserOverride(uid=uid, gid=gid, text=text)


# -- Kubernetes: the local engine's copy is "the very image the node runs" ------------------------------------

def _oci_export(blobs: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for digest, data in sorted(blobs.items()):
            info = tarfile.TarInfo(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_the_node_config_digest_is_matched_through_the_local_engines_manifest():
    """Docker 29 names an image by its index digest; the node by its config digest."""
    import hashlib
    import json

    from debugkit.runtimes.kubernetes.identity import config_digests

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = b'{"config": {"User": "65532"}}'
    manifest = json.dumps({"config": {"digest": digest(config)}, "layers": []}).encode()
    index = json.dumps({"manifests": [{"digest": digest(manifest)}]}).encode()
    export = _oci_export({digest(b): b for b in (config, manifest, index)})

    class Exporter:
        def export_stream(self, image):
            body = io.BytesIO(export)
            return body, body

    assert config_digests(Exporter(), "img", digest(index)) == {digest(config)}
    assert config_digests(Exporter(), "img", digest(b"another")) == set()


def test_the_export_is_read_only_until_the_manifest_proves_the_node_image():
    """The export lists blobs by digest, so layers may come after the manifest: once the
    manifest names the node's config digest, the layers are not read; an image whose export
    is larger than the bound is not exported at all."""
    import hashlib
    import json

    from debugkit.runtimes.kubernetes.identity import MAX_EXPORT_BYTES, config_digests, exportable

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = b'{"config": {}}'
    manifest = json.dumps({"config": {"digest": digest(config)}, "layers": []}).encode()
    layer = b"L" * (4 << 20)
    blobs = {digest(manifest): manifest, "sha256:" + "f" * 64: layer}  # the layer sorts last
    export = _oci_export(blobs)

    class Body(io.BytesIO):
        furthest = 0

        def read(self, size=-1):
            data = super().read(size)
            Body.furthest = max(Body.furthest, self.tell())
            return data

    class Exporter:
        def export_stream(self, image):
            body = Body(export)
            return body, body

    assert config_digests(Exporter(), "img", digest(manifest), wanted=digest(config)) == {digest(config)}
    assert Body.furthest < len(layer)  # stopped at the manifest
    Body.furthest = 0
    assert config_digests(Exporter(), "img", digest(manifest), wanted=digest(b"other")) == {digest(config)}
    assert Body.furthest >= len(layer)  # no proof: read to the end (within the bound)
    assert exportable({"Size": MAX_EXPORT_BYTES}) and not exportable({"Size": MAX_EXPORT_BYTES + 1})
    assert exportable({})  # unknown size: try, within the bound


class ArchiveAndTop(Archive):
    """... and the engine's top API, for the process source."""

    def top(self, container, ps_args=""):
        return {"Titles": ["PID", "RUID", "EUID", "RGID", "EGID", "SUPGID"],
                "Processes": [["0", "65532", "65532", "65532", "65532", "65532"]]}


def test_every_source_for_inspect_names_the_process_from_the_images_passwd():
    """inspect and doctor ask for every source: the process's identity gets its name from
    the image's passwd, the configured one follows (a plan's sources are immutable rows)."""
    probe = ContainerProbe(ArchiveAndTop({"/etc/passwd": NONROOT, "/etc/group": b"nonroot:x:65532:\n"}), local=False)
    sources = probe.identity_sources(target("65532"), stop_at_first=False)
    assert [s.source for s in sources] == ["process", "config"]
    assert sources[0].identity.user_name == "nonroot" and sources[1].identity.uid == 65532
