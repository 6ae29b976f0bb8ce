"""The Engine API version, negotiated against a loopback engine that refuses out-of-range
versions as Docker does: the choice from the unversioned ping, once per process; one
renegotiation (with GET /version) when the engine changes under a session; and a clear
exit code (76) when the ranges do not meet."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from debugkit.core.errors import EngineIncompatible, ExitCode
from debugkit.runtimes.docker import apiversion
from debugkit.runtimes.docker.engine import EngineClient
from tests.helpers import run_cli, text
from tests.unit.fake_engine import FakeEngine


@pytest.fixture
def sockdir():
    # Short: a unix socket's path must fit in 108 bytes, which pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="dk-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engine(sockdir):
    fake = FakeEngine(os.path.join(sockdir, "engine.sock"))
    fake.routes[("GET", "/containers/json")] = []
    fake.start()
    yield fake
    fake.stop()


def test_docker_29_with_its_minimum_raised_gets_the_newest_tested_version(engine):
    engine.upgrade(min_version="1.44", max_version="1.55", release="29.1.0")
    client = EngineClient(engine.url)
    assert client.containers() == []
    assert engine.paths() == ["/_ping", "/v1.52/containers/json"]
    found = client.negotiate()
    # The ping states the newest version only; the minimum is learned if a call is refused.
    assert (found.version, found.engine_min, found.engine_max, found.engine_version) == ("1.52", None, "1.55",
                                                                                         "29.1.0")
    assert found.describe() == "1.52 (engine 29.1.0 speaks up to 1.55)"


def test_an_engine_of_api_1_41_is_spoken_to_in_1_41(engine):
    engine.upgrade(min_version="1.12", max_version="1.41", release="20.10.24")
    client = EngineClient(engine.url)
    client.containers()
    assert engine.paths() == ["/_ping", "/v1.41/containers/json"]


def test_the_version_is_asked_once_per_process_and_engine(engine):
    for _ in range(3):
        client = EngineClient(engine.url)  # gc, doctor and fleets make several clients of one engine
        client.containers()
        client.close()
    assert engine.paths() == ["/_ping"] + ["/v1.52/containers/json"] * 3


def test_an_engine_upgraded_mid_session_is_renegotiated_once(engine):
    engine.upgrade(min_version="1.24", max_version="1.41", release="28.5.0")
    client = EngineClient(engine.url)
    client.containers()
    # The engine is replaced by Docker 29.0 (minimum 1.44) while the session is kept alive.
    engine.upgrade(min_version="1.44", max_version="1.52", release="29.0.0")
    assert client.containers() == []
    assert engine.paths() == ["/_ping", "/v1.41/containers/json",
                              "/v1.41/containers/json",  # refused: too old
                              "/version", "/v1.52/containers/json"]
    assert client.negotiate().describe() == "1.52 (engine 29.0.0 speaks 1.44 to 1.52)"
    client.containers()  # and from then on, the new version at once
    assert engine.paths()[5:] == ["/v1.52/containers/json"]


def test_an_engine_downgraded_mid_session_is_renegotiated_too(engine):
    client = EngineClient(engine.url)
    client.containers()
    engine.upgrade(min_version="1.24", max_version="1.43", release="24.0.9")
    client.containers()
    assert engine.paths()[2:] == ["/v1.52/containers/json", "/version", "/v1.43/containers/json"]


def test_an_upgraded_stream_is_renegotiated_as_well(engine):
    engine.upgrade(min_version="1.24", max_version="1.41", release="28.5.0")
    client = EngineClient(engine.url)
    client.containers()
    engine.upgrade(min_version="1.44", max_version="1.55", release="29.2.0")
    sock = client.attach_socket("c0ffee", params={"stdout": 1, "stream": 1})
    try:
        assert sock.recv(100) == b"stream of /containers/c0ffee/attach"
    finally:
        sock.close()
    assert engine.paths()[2:] == ["/v1.41/containers/c0ffee/attach", "/version",
                                                              "/v1.52/containers/c0ffee/attach"]


def test_ranges_that_do_not_meet_are_a_clear_error_not_an_outage(engine):
    engine.upgrade(min_version="1.53", max_version="1.60", release="31.0.0")
    client = EngineClient(engine.url)
    with pytest.raises(EngineIncompatible) as caught:
        client.containers()
    error = caught.value
    assert error.exit_code == ExitCode.ENGINE_INCOMPATIBLE == 76
    assert str(error) == (f"the Docker engine at {engine.url} (Docker 31.0.0) speaks Engine API 1.53 to 1.60, and "
                          f"this debugkit speaks 1.41 to 1.52 (upgrade debugkit, or start dockerd with "
                          f"DOCKER_MIN_API_VERSION=1.52)")
    # One call was refused (before the engine did anything), then GET /version: nothing more.
    assert engine.paths() == ["/_ping", "/v1.52/containers/json", "/version"]


def test_an_engine_older_than_debugkit_is_told_to_upgrade(engine):
    engine.upgrade(min_version="1.12", max_version="1.39", release="18.09.9")
    with pytest.raises(EngineIncompatible, match=r"speaks Engine API up to 1\.39, and this debugkit speaks "
                                                 r"1\.41 to 1\.52 \(upgrade the engine to one that speaks API "
                                                 r"1\.41 or later"):
        EngineClient(engine.url, engine="Podman").negotiate()
    assert engine.paths() == ["/_ping"]


def test_an_engine_that_changes_to_a_range_we_cannot_speak_mid_session(engine):
    client = EngineClient(engine.url)
    client.containers()
    engine.upgrade(min_version="1.54", max_version="1.55", release="30.0.0")
    with pytest.raises(EngineIncompatible, match="speaks Engine API 1.54 to 1.55"):
        client.containers()
    assert engine.paths()[2:] == ["/v1.52/containers/json", "/version"]  # asked once, tried nothing more


@pytest.mark.parametrize("message, expected", [
    ("client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a "
     "newer version", apiversion.Refusal("1.41", "old", "1.44")),
    ("client version 1.55 is too new. Maximum supported API version is 1.41", apiversion.Refusal("1.55", "new", "1.41")),
    ("Conflict. The container name is already in use", None),
])
def test_refusals_are_read_from_dockers_own_words(message, expected):
    assert apiversion.refusal(400, message) == expected
    assert apiversion.refusal(500, message) is None


@pytest.mark.parametrize("answer, chosen", [
    ({"ApiVersion": "1.55", "MinAPIVersion": "1.44"}, "1.52"),    # Docker 29, DOCKER_MIN_API_VERSION=1.44
    ({"ApiVersion": "1.41", "MinAPIVersion": "1.24"}, "1.41"),    # Podman 4.3
    ({"ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.41"),    # Docker 20.10
    ({"ApiVersion": "1.52", "MinAPIVersion": "1.52"}, "1.52"),
    ({"ApiVersion": "1.100", "MinAPIVersion": "1.9"}, "1.52"),    # compared as numbers, not as text
    ({}, "1.41"),                                                 # a proxy that hides the version
])
def test_the_choice(answer, chosen):
    assert apiversion.negotiate(answer, engine="Docker", host="unix:///x").version == chosen


def _cli_env(sockdir: str, docker: FakeEngine, podman: FakeEngine | None = None) -> dict:
    return {"DOCKER_HOST": docker.url, "CONTAINER_HOST": podman.url if podman else "",
            "KUBECONFIG": os.path.join(sockdir, "no-kubeconfig"), "HOME": sockdir, "XDG_CONFIG_HOME": sockdir,
            "DEBUGKIT_CONFIG": ""}


def test_the_cli_exits_76_with_one_line_naming_both_ranges(engine, sockdir):
    engine.upgrade(min_version="1.53", max_version="1.60", release="31.0.0")
    result = run_cli("attach", "web", "--", "true", env=_cli_env(sockdir, engine), timeout=30)
    out, err = text(result)
    assert result.returncode == ExitCode.ENGINE_INCOMPATIBLE, err
    assert err.count("\n") == 1 and "1.53 to 1.60" in err and "1.41 to 1.52" in err and "upgrade debugkit" in err
    assert "cannot reach" not in err and out == ""


def test_debug_shows_the_negotiated_version(engine, sockdir):
    result = run_cli("--debug", "ps", "--runtime", "docker", "-o", "json", env=_cli_env(sockdir, engine), timeout=30)
    out, err = text(result)
    assert result.returncode == 0, err
    assert json.loads(out) == []
    assert f"debugkit: debug: Docker engine at {engine.url}: Engine API 1.52 (engine 29.1.0 speaks up to 1.55)" in err


def test_ps_reports_a_failing_runtime_and_exits_non_zero_after_the_others_rows(engine, sockdir):
    engine.upgrade(min_version="1.53", max_version="1.60", release="31.0.0")
    podman = FakeEngine(os.path.join(sockdir, "podman.sock"), min_version="1.24", max_version="1.41",
                        release="4.3.1")
    podman.routes[("GET", "/containers/json")] = [
        {"Id": "abc123", "Names": ["/debugkit-1a2b"], "State": "running", "Created": 1700000000,
         "Labels": {"io.debugkit.managed": "true", "io.debugkit.session": "1a2b", "io.debugkit.target": "web",
                    "io.debugkit.user": "65532:65532"}}]
    podman.start()
    try:
        result = run_cli("ps", env=_cli_env(sockdir, engine, podman), timeout=30)
    finally:
        podman.stop()
    out, err = text(result)
    assert result.returncode == ExitCode.ENGINE_INCOMPATIBLE, err
    assert "podman" in out and "1a2b" in out and "web" in out  # the runtime that answered still shows
    assert err.startswith("debugkit: error: docker: the Docker engine at") and err.count("\n") == 1


def test_ps_and_gc_without_any_answer_print_no_empty_table(engine, sockdir):
    engine.upgrade(min_version="1.53", max_version="1.60", release="31.0.0")
    podman = FakeEngine(os.path.join(sockdir, "podman.sock"), min_version="1.24", max_version="1.41")
    podman.routes[("GET", "/containers/json")] = []  # it answers: no sessions there
    podman.start()
    try:
        for command in (["ps"], ["ps", "-o", "json"], ["gc", "--dry-run"]):
            result = run_cli(*command, env=_cli_env(sockdir, engine, podman), timeout=30)
            out, err = text(result)
            assert result.returncode == ExitCode.ENGINE_INCOMPATIBLE, (command, err)
            assert out == "" and "speaks Engine API 1.53 to 1.60" in err, command
    finally:
        podman.stop()
