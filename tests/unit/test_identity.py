import pytest

from debugkit.core import identity as ident
from debugkit.core.errors import IdentityUnresolved, InvalidInput

DISTROLESS_PASSWD = """root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
broken line without fields
appuser:x:10001:10001::/app:/sbin/nologin
"""
GROUP = """root:x:0:
tty:x:5:
metrics:x:2000:nonroot,appuser
nonroot:x:65532:
"""


@pytest.fixture
def etc():
    return ident.parse_passwd(DISTROLESS_PASSWD), ident.parse_group(GROUP)


def test_passwd_and_group_parsing_skips_malformed_lines(etc):
    passwd, groups = etc
    assert set(passwd) == {"root", "nobody", "nonroot", "appuser"}
    assert passwd["nonroot"] == ident.PasswdEntry("nonroot", 65532, 65532, "/home/nonroot")
    assert groups["metrics"].members == ("nonroot", "appuser")


def test_named_user_and_group_resolve_through_the_images_files(etc):
    passwd, groups = etc
    got = ident.resolve_configured_user("nonroot:nonroot", passwd=passwd, groups=groups)
    assert (got.uid, got.gid, got.groups, got.user_name) == (65532, 65532, (65532,), "nonroot")


def test_name_without_group_takes_primary_and_memberships(etc):
    passwd, groups = etc
    got = ident.resolve_configured_user("appuser", passwd=passwd, groups=groups)
    assert (got.uid, got.gid, got.groups) == (10001, 10001, (10001, 2000))


def test_numeric_uid_without_passwd_entry_follows_the_runtime_rule():
    docker = ident.resolve_configured_user("10001", passwd={}, groups={}, missing_gid="zero")
    assert (docker.uid, docker.gid) == (10001, 0) and "GID 0" in docker.notes[0]
    design = ident.resolve_configured_user("10001", passwd={}, groups={})
    assert (design.uid, design.gid) == (10001, 10001) and "GID = UID" in design.notes[0]


def test_numeric_uid_with_entry_gets_its_primary_group(etc):
    passwd, groups = etc
    got = ident.resolve_configured_user("65532", passwd=passwd, groups=groups)
    assert (got.gid, got.user_name) == (65532, "nonroot")


@pytest.mark.parametrize("user,message", [
    ("ghost", "not in the image's /etc/passwd"),
    ("nonroot:ghosts", "group 'ghosts'"),
    ("", "no user is configured"),
])
def test_unresolvable_names_raise_instead_of_guessing(etc, user, message):
    passwd, groups = etc
    with pytest.raises(IdentityUnresolved, match=message):
        ident.resolve_configured_user(user, passwd=passwd, groups=groups)


def test_name_in_image_without_passwd_is_explicit():
    with pytest.raises(IdentityUnresolved, match="without /etc/passwd"):
        ident.resolve_configured_user("nonroot", passwd={}, groups={})


def test_process_status_effective_ids_win_and_differences_are_noted():
    status = "Name:\tserver\nUid:\t0\t65532\t65532\t65532\nGid:\t0\t65532\t65532\t65532\nGroups:\t65532 2000 \n"
    got = ident.identity_from_status(status)
    assert (got.uid, got.gid, got.groups, got.source) == (65532, 65532, (65532, 2000), "process")
    assert "real IDs 0:0" in got.notes[0]


def test_process_status_without_ids_is_unresolved():
    with pytest.raises(IdentityUnresolved):
        ident.identity_from_status("Name:\tx\n")


def test_ps_row_from_engine_top():
    got = ident.identity_from_ps_row({"PID": "12", "RUID": "10001", "EUID": "10001", "RGID": "0", "EGID": "0",
                                      "SUPGID": "0,5"})
    assert (got.uid, got.gid, got.groups, got.source) == (10001, 0, (0, 5), "process-top")
    with pytest.raises(IdentityUnresolved):
        ident.identity_from_ps_row({"PID": "1", "RUID": "x"})


@pytest.mark.parametrize("value,expected", [("65532", (65532, None)), ("0:0", (0, 0)), (" 1:2 ", (1, 2))])
def test_user_flag_accepts_numeric_forms(value, expected):
    assert ident.parse_user_flag(value) == expected


@pytest.mark.parametrize("value", ["nonroot", "1:2:3", "-1", "1:", ":1", "4294967295", "1:x"])
def test_user_flag_rejects_everything_else(value):
    with pytest.raises(InvalidInput):
        ident.parse_user_flag(value)


def test_user_flag_without_gid_uses_primary_group_or_uid(etc):
    passwd, _ = etc
    assert ident.identity_from_flag("10001", passwd=passwd).gid == 10001
    lonely = ident.identity_from_flag("777", passwd=passwd)
    assert lonely.gid == 777 and "GID = UID" in lonely.notes[0] and lonely.source == "flag"
