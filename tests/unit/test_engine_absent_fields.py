"""Fields recent Engine API versions leave out are read as absent, never as an error.

From API 1.52 `GET /images/{id}/json` omits an unset `Cmd`, `Entrypoint`, `Env`, `User`,
`Labels`, `WorkingDir` (and `Parent`, `Comment`, `DockerVersion`, `Author`), and `Config`
and `RepoDigests` may be null; `GET /version` may omit `MinAPIVersion`. The loopback
engine answers with those shapes (as Docker 29 does at API 1.52); debugkit's readers
must take them."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from debugkit import runtimes
from debugkit.runtimes.base import OK
from debugkit.runtimes.docker import doctor
from debugkit.runtimes.docker.runtime import DockerRuntime
from debugkit.session.defaults import PREFERENCES
from tests.unit.fake_engine import FakeEngine

IMAGE_ID = "sha256:" + "ab" * 32
# A FROM scratch image with no CMD, ENTRYPOINT, ENV, USER or LABEL, as API 1.52 shows it.
BARE_IMAGE = {"Id": IMAGE_ID, "RepoTags": ["bare:1"], "RepoDigests": None, "Created": "2026-01-01T00:00:00Z",
              "Config": {}, "Architecture": "amd64", "Os": "linux", "Size": 1024,
              "RootFS": {"Type": "layers", "Layers": ["sha256:" + "cd" * 32]}}
NO_CONFIG_IMAGE = {**BARE_IMAGE, "Config": None}


@pytest.fixture
def engine():
    directory = tempfile.mkdtemp(prefix="dk-", dir="/tmp")
    fake = FakeEngine(os.path.join(directory, "engine.sock"), min_version="1.44", max_version="1.52")
    fake.start()
    yield fake
    fake.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("image", [BARE_IMAGE, NO_CONFIG_IMAGE], ids=["config without fields", "config null"])
def test_an_image_without_command_user_or_labels(engine, image):
    engine.routes[("GET", "/images/bare:1/json")] = image
    facts = DockerRuntime(address=engine.url).image_facts("bare:1", toolbox=False)
    assert facts == {"ref": "bare:1", "image_id": IMAGE_ID, "image_digest": None, "default_command": ("sh",),
                     "labels": {}}
    assert engine.paths()[-1] == "/v1.52/images/bare:1/json"


def test_an_image_with_its_fields_still_reads_them(engine):
    engine.routes[("GET", "/images/tools:1/json")] = {
        **BARE_IMAGE, "RepoDigests": ["tools@sha256:" + "ef" * 32],
        "Config": {"Entrypoint": ["/bin/tini", "--"], "Cmd": ["sh"], "User": "65532", "Labels": {"a": "b"}}}
    facts = DockerRuntime(address=engine.url).image_facts("tools:1", toolbox=False)
    assert facts["default_command"] == ("/bin/tini", "--", "sh") and facts["labels"] == {"a": "b"}
    assert facts["image_digest"] == "tools@sha256:" + "ef" * 32


def test_a_target_whose_inspect_leaves_out_what_is_unset(engine):
    engine.routes[("GET", "/containers/web/json")] = {
        "Id": "f00d" * 16, "Name": "/web", "Image": IMAGE_ID,
        "State": {"Status": "running", "Running": True, "Pid": 4242},
        "Config": {"Image": "bare:1", "User": "", "Labels": None}, "HostConfig": {"GroupAdd": None}}
    runtime = DockerRuntime(address=engine.url)
    info = runtime.probe.find_target("web")
    assert (info.name, info.image, info.pid, info.configured_user, info.group_add) == ("web", "bare:1", 4242, "", ())


def test_sessions_from_a_list_with_sparse_rows(engine):
    engine.routes[("GET", "/containers/json")] = [
        {"Id": "1" * 64, "Names": None, "Labels": None, "State": "exited"},
        {"Id": "2" * 64, "Names": ["/debugkit-9z"], "Labels": {"io.debugkit.session": "9z"}, "State": "running",
         "Created": 1}]
    rows = DockerRuntime(address=engine.url).sessions()
    assert [(r.name, r.session, r.state, r.target, r.reusable) for r in rows] == [
        ("?", "?", "exited", "?", False), ("debugkit-9z", "9z", "running", "?", False)]


def test_doctor_reads_a_toolbox_image_without_config(engine, monkeypatch):
    monkeypatch.setenv("DEBUGKIT_IMAGE", "bare:1")
    engine.routes[("GET", "/images/bare:1/json")] = NO_CONFIG_IMAGE
    from debugkit.runtimes.docker.engine import EngineClient

    result = doctor.check_toolbox_image(EngineClient(engine.url), runtimes.get("docker", preferences=PREFERENCES))
    assert result.status == OK and "bare:1" in result.detail


def test_doctor_shows_the_negotiated_version_when_the_minimum_is_not_stated(engine):
    from debugkit.runtimes.docker.engine import EngineClient

    engine.upgrade(min_version=None, max_version="1.52", release="29.0.0")
    result = doctor.check_engine(EngineClient(engine.url), runtimes.get("docker"))
    assert result.status == OK
    assert result.detail == (f"Docker 29.0.0 at {engine.url}: Engine API 1.52 (the engine speaks up to 1.52, "
                             f"debugkit 1.41 to 1.52)")


def test_the_toolbox_build_reads_labels_of_an_image_without_config():
    from debugkit.toolbox.build import _labels

    class API:
        def inspect_image(self, ref):
            return dict(NO_CONFIG_IMAGE)

    assert _labels(API(), "bare:1") == {}
