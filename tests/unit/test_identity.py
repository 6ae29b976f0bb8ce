import pytest

from debugkit.core import identity as ident
from debugkit.core import userdb
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
    return userdb.from_text(DISTROLESS_PASSWD, GROUP)


def test_passwd_and_group_are_parsed_as_the_runtimes_parse_them(etc):
    assert [e.name for e in etc.passwd] == ["root", "nobody", "nonroot", "broken line without fields", "appuser"]
    assert etc.user_named("nonroot") == ident.PasswdEntry("nonroot", 65532, 65532, "/home/nonroot")
    # runc's parser: missing fields are 0, so a line without colons is a "user" with UID 0.
    assert etc.user_named("broken line without fields").uid == 0
    assert etc.user_with_uid(0).name == "root"  # the first match wins
    assert etc.group_named("metrics").members == ("nonroot", "appuser")


def test_named_user_and_group_resolve_through_the_images_files(etc):
    got = ident.runtime_user("nonroot:nonroot", etc)
    assert (got.uid, got.gid, got.groups, got.user_name) == (65532, 65532, (65532,), "nonroot")


def test_name_without_group_takes_primary_and_memberships(etc):
    got = ident.runtime_user("appuser", etc)
    assert (got.uid, got.gid, got.groups) == (10001, 10001, (10001, 2000))


def test_numeric_uid_without_passwd_entry_follows_the_runtime_rule():
    # Docker, Podman and containerd all run a UID that passwd lacks (or no passwd at all) with GID 0.
    for db in (userdb.EMPTY, userdb.from_text("root:x:0:0::/:/bin/sh\n", "")):
        got = ident.runtime_user("10001", db)
        assert (got.uid, got.gid, got.groups) == (10001, 0, (0,)) and "GID 0" in got.notes[0]


def test_numeric_uid_with_entry_gets_its_primary_group(etc):
    got = ident.runtime_user("65532", etc)
    assert (got.gid, got.user_name) == (65532, "nonroot")


@pytest.mark.parametrize("user,message", [
    ("ghost", "not in the image's /etc/passwd"),
    ("nonroot:ghosts", "group 'ghosts'"),
    ("", "no user is configured"),
])
def test_unresolvable_names_raise_instead_of_guessing(etc, user, message):
    with pytest.raises(IdentityUnresolved, match=message):
        ident.runtime_user(user, etc)


def test_name_in_image_without_passwd_is_explicit():
    with pytest.raises(IdentityUnresolved, match="without /etc/passwd"):
        ident.runtime_user("nonroot", userdb.EMPTY)


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


def test_user_flag_without_gid_takes_the_group_the_runtime_would_give(etc):
    assert ident.identity_from_flag("10001", db=etc).gid == 10001
    # `--user 65532` in an image without that passwd entry: the runtime's GID 0, not 65532.
    lonely = ident.identity_from_flag("65532", db=userdb.EMPTY)
    assert (lonely.uid, lonely.gid) == (65532, 0) and "GID 0" in lonely.notes[0] and lonely.source == "flag"


def test_user_flag_without_gid_is_uncertain_when_the_passwd_cannot_be_read():
    with pytest.raises(IdentityUnresolved, match="cannot be read") as raised:
        ident.identity_from_flag("65532", db=None)
    assert "--user 65532:GID" in str(raised.value)
    assert ident.identity_from_flag("65532:7", db=None).gid == 7
