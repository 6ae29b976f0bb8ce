"""The Docker/Podman create body and its `docker run` twin, as plain data (no engine): table
tests in the style of kubectl's TestGenerateDebugContainer."""
from __future__ import annotations

import pytest

from debugkit.core.identity import Identity
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import Resources, base_spec
from debugkit.runtimes.docker import translate

TARGET_ID = "f" * 64
TARGET = Identity(uid=65532, gid=65532, groups=(65532, 2000), source="process")
HELPER = translate.HELPER


def spec(profile="restricted", *, command=(HELPER, "reap", "--watch-stdin", "--", "id"), resources=None, **kw):
    s = base_spec(image="debugkit/toolbox:0.1.0", identity=TARGET, target_name="web", target_id=TARGET_ID,
                  runtime="docker", cli_pid=4242, cli_host="host", local_user="alice", session_id="abcd1234",
                  command=command, **kw)
    s = apply_profile(s, profile)
    return s.evolve(resources=resources) if resources is not None else s


CASES = [
    # name, spec, expected body fields, expected HostConfig fields, expected in the `docker run` line
    ("restricted, the default",
     spec(),
     {"User": "65532:65532", "Entrypoint": [HELPER], "Cmd": ["reap", "--watch-stdin", "--", "id"],
      "OpenStdin": False, "Tty": False},
     {"PidMode": f"container:{TARGET_ID}", "NetworkMode": f"container:{TARGET_ID}", "CapDrop": ["ALL"],
      "SecurityOpt": ["no-new-privileges:true"], "ReadonlyRootfs": True, "GroupAdd": ["2000"],
      "Memory": 256 << 20, "MemorySwap": 256 << 20, "PidsLimit": 256, "NanoCpus": 1_000_000_000,
      "AutoRemove": True, "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=64m,mode=1777"},
      "LogConfig": {"Type": "none", "Config": {}}},
     ["--log-driver none", "--pid container:web", "--network container:web", "--user 65532:65532", "--cap-drop ALL",
      "--security-opt no-new-privileges", "--read-only", "--memory 256m", "--pids-limit 256", "--cpus 1",
      f"--entrypoint {HELPER} debugkit/toolbox:0.1.0 reap --watch-stdin -- id"]),
    ("netadmin: root with NET_ADMIN and NET_RAW only",
     spec("netadmin"),
     {"User": "0:0"},
     {"CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN", "NET_RAW"], "SecurityOpt": ["no-new-privileges:true"]},
     ["--user 0:0", "--cap-add NET_ADMIN", "--cap-add NET_RAW"]),
    ("sysadmin: privileged, asked for by name",
     spec("sysadmin"),
     {"User": "0:0"},
     {"Privileged": True},
     ["--privileged"]),
    ("no limits",
     spec(resources=Resources(memory_bytes=None, pids=None, nano_cpus=None)),
     {},
     {"Memory": None, "PidsLimit": None, "NanoCpus": None},
     []),
    ("an interactive session's keep-alive on the attach's stdin",
     spec(command=(HELPER, "keepalive", "--socket", "debugkit-abcd1234", "--stdin", "--idle", "600"), stdin=True),
     {"OpenStdin": True, "StdinOnce": True, "AttachStdin": True, "Entrypoint": [HELPER]},
     {},
     ["-i"]),
    ("no command: the image's own",
     spec(command=()),
     {"Entrypoint": None, "Cmd": None},
     {},
     []),
]


@pytest.mark.parametrize("name, the_spec, body_fields, host_fields, argv_parts", CASES, ids=[c[0] for c in CASES])
def test_create_request_and_its_docker_run_twin(name, the_spec, body_fields, host_fields, argv_parts):
    request = translate.create_request(the_spec, target_id=TARGET_ID, log_driver="none")
    body, host = request["body"], request["body"]["HostConfig"]
    assert request["name"] == "debugkit-abcd1234"
    for key, value in body_fields.items():
        assert body.get(key) == value, key
    for key, value in host_fields.items():
        assert host.get(key) == value, key
    assert body["Labels"]["io.debugkit.managed"] == "true" and body["Labels"]["io.debugkit.session"] == "abcd1234"
    line = translate.shell_join(translate.run_argv(request, names={TARGET_ID: "web"}))
    assert line.startswith("docker run --rm --name debugkit-abcd1234 ")
    for part in argv_parts:
        assert part in line, (part, line)


def test_the_log_driver_is_the_engines_unless_given():
    assert "LogConfig" not in translate.create_request(spec(), target_id=TARGET_ID)["body"]["HostConfig"]
    assert "--log-driver" not in translate.run_argv(translate.create_request(spec(), target_id=TARGET_ID))


def test_the_run_line_is_derived_from_the_body_and_names_the_cli():
    request = translate.create_request(spec(), target_id=TARGET_ID)
    argv = translate.run_argv(request, cli="podman")
    assert argv[:2] == ["podman", "run"]
    # Every label and env entry of the body is in the line: nothing is added or dropped.
    labels = [argv[i + 1] for i, a in enumerate(argv) if a == "--label"]
    assert labels == [f"{k}={v}" for k, v in request["body"]["Labels"].items()]
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert env == request["body"]["Env"]


def test_a_foreign_image_gets_the_helper_as_a_read_only_single_file_mount():
    request = translate.create_request(spec(), target_id=TARGET_ID, mounts=(("/cache/helper", HELPER),))
    assert request["body"]["HostConfig"]["Binds"] == [f"/cache/helper:{HELPER}:ro"]
    assert f"-v /cache/helper:{HELPER}:ro" in translate.shell_join(translate.run_argv(request))


@pytest.mark.parametrize("labels, protocol", [
    ({}, None),
    ({translate.HELPER_LABEL: "/elsewhere"}, None),
    ({translate.HELPER_LABEL: HELPER}, 1),
    ({translate.HELPER_LABEL: HELPER, translate.HELPER_PROTOCOL_LABEL: "3"}, 3),
    ({translate.HELPER_LABEL: HELPER, translate.HELPER_PROTOCOL_LABEL: "x"}, 1),
])
def test_the_helpers_protocol_comes_from_the_image_labels(labels, protocol):
    assert translate.helper_protocol(labels) == protocol


@pytest.mark.parametrize("mode, keep_alive, expected", [
    ("command", None, (HELPER, "reap", "--watch-stdin", "--", "id")),
    ("command", 60, (HELPER, "keepalive", "--socket", "dk", "--idle", "60", "--first", "60")),
    ("interactive", None, (HELPER, "keepalive", "--socket", "dk", "--stdin", "--idle",
                           str(translate.SESSION_IDLE_SECONDS))),
])
def test_the_main_process_for_each_mode(mode, keep_alive, expected):
    assert translate.main_command("dk", ("id",), mode=mode, helper=True, keep_alive=keep_alive,
                                  session_id="s") == expected
