import pytest

from debugkit.core.errors import InvalidInput
from debugkit.core.identity import Identity
from debugkit.core.profiles import PROFILES, apply_profile
from debugkit.core.spec import LABEL_MANAGED, LABEL_PROFILE, LABEL_SESSION, base_spec
from debugkit.runtimes.terminal import FrameDemuxer

TARGET = Identity(uid=65532, gid=65532, groups=(65532, 2000), source="process")


def spec(**kw):
    return base_spec(image="img:1", identity=TARGET, target_name="web", target_id="abc", runtime="docker",
                     cli_pid=1, cli_host="h", local_user="me", **kw)


def test_base_spec_identifies_itself():
    s = spec(session_id="0123abcd")
    labels = s.labels_dict()
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_SESSION] == "0123abcd"
    assert s.name == "debugkit-0123abcd"
    assert s.env_dict()["DEBUGKIT_TARGET_ROOT"] == "/proc/1/root"


def test_restricted_is_least_privilege_as_the_target():
    s = apply_profile(spec(), "restricted")
    assert (s.uid, s.gid, s.supplementary_groups) == (65532, 65532, (2000,))
    assert s.cap_drop == ("ALL",) and s.cap_add == () and not s.privileged
    assert s.no_new_privileges and s.read_only_root and s.run_as_non_root and s.seccomp_runtime_default
    assert s.labels_dict()[LABEL_PROFILE] == "restricted"


@pytest.mark.parametrize("name,caps", [("netadmin", ("NET_ADMIN", "NET_RAW")), ("ptrace", ("SYS_PTRACE",))])
def test_capability_profiles_add_only_what_they_need(name, caps):
    s = apply_profile(spec(), name)
    assert s.cap_drop == ("ALL",) and s.cap_add == caps and s.uid == 0 and not s.privileged
    assert s.no_new_privileges


def test_sysadmin_is_privileged():
    s = apply_profile(spec(), "sysadmin")
    assert s.privileged and s.uid == 0 and not s.no_new_privileges


def test_profiles_do_not_mutate_their_input():
    original = spec()
    apply_profile(original, "sysadmin")
    assert not original.privileged and original.uid == 65532


def test_unknown_profile():
    with pytest.raises(InvalidInput, match="restricted"):
        apply_profile(spec(), "godmode")
    assert set(PROFILES) == {"restricted", "netadmin", "ptrace", "node", "sysadmin"}


def test_demuxer_splits_frames_across_arbitrary_chunks():
    frames = b"".join(bytes([stream, 0, 0, 0]) + len(p).to_bytes(4, "big") + p
                      for stream, p in [(1, b"hello "), (2, b"oops"), (1, b"world")])
    demux = FrameDemuxer()
    got = []
    for i in range(0, len(frames), 3):
        got.extend(demux.feed(frames[i:i + 3]))
    assert got == [(1, b"hello "), (2, b"oops"), (1, b"world")]
