"""debugkit.toolbox and `debugkit toolbox` without an engine: pure logic, injected faults."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from debugkit import __version__
from debugkit.cli.toolbox import main as toolbox_main
from debugkit.cli.toolbox import toolbox
from debugkit.core.errors import ExitCode, ImageMissing, InvalidInput
from debugkit.session.defaults import toolbox_image as default_ref
from debugkit.toolbox.build import (
    BUILD_COMMAND,
    OFFLINE_BASE_IMAGE,
    build_toolbox,
    missing_toolbox_error,
    pinned_base_image,
    resolve_base_image,
    toolbox_context_dir,
    variant_ref,
)
from debugkit.toolbox.context import _strip_userinfo

pytestmark = pytest.mark.toolbox


class FakeAPI:
    """Just enough of the image engine (runtimes/docker/images.ImageEngine): which images
    exist, and what a pull does."""

    def __init__(self, present=(), pull_error: str | None = "registry unreachable"):
        self.present = set(present)
        self.pull_error = pull_error
        self.pulled: list[str] = []

    def inspect_image(self, ref):
        if ref not in self.present:
            return None
        return {"Id": "sha256:" + "0" * 64}

    def pull(self, ref):
        self.pulled.append(ref)
        if self.pull_error:
            return iter([{"status": "Pulling"}, {"error": self.pull_error}])
        self.present.add(ref)
        return iter([{"status": "Downloaded newer image"}])


def test_context_dir_holds_the_dockerfile():
    context = toolbox_context_dir()
    assert (context / "Dockerfile").is_file()
    assert (context / "dpkg-nodoc.cfg").is_file()
    assert (context / "helper" / "go.mod").is_file()  # debugkit-helper's source (package data too)


def test_pinned_base_is_a_digest():
    assert re.fullmatch(r"debian:bookworm-slim@sha256:[0-9a-f]{64}", pinned_base_image())


def test_default_references(monkeypatch):
    monkeypatch.delenv("DEBUGKIT_IMAGE", raising=False)
    assert default_ref() == f"debugkit/toolbox:{__version__}" == variant_ref("full")
    assert variant_ref("slim") == f"debugkit/toolbox:{__version__}-slim"
    monkeypatch.setenv("DEBUGKIT_IMAGE", "my/tools:1")
    assert default_ref() == "my/tools:1"  # the environment overrides the standard tag
    assert variant_ref("full") == f"debugkit/toolbox:{__version__}"
    with pytest.raises(InvalidInput):
        variant_ref("huge")  # type: ignore[arg-type]


def test_missing_toolbox_error_names_the_command():
    err = missing_toolbox_error("debugkit/toolbox:9")
    assert isinstance(err, ImageMissing) and err.exit_code == ExitCode.IMAGE_MISSING
    assert str(err).endswith(f"build it with: {BUILD_COMMAND}")


def test_credentials_never_reach_the_source_label():
    assert _strip_userinfo("https://user:tok@example.org/x.git") == "https://example.org/x.git"
    assert _strip_userinfo("git@example.org:x.git") == "git@example.org:x.git"


def test_inputs_digest_follows_files_base_and_args_but_not_revision(tmp_path):
    from debugkit.toolbox.build import inputs_digest

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    args = {"BASE_IMAGE": "b", "VERSION": "1", "REVISION": "r1", "SOURCE": "s"}
    first = inputs_digest(context=tmp_path, variant="full", base_id="sha256:1", buildargs=args)
    assert first == inputs_digest(context=tmp_path, variant="full", base_id="sha256:1",
                                  buildargs={**args, "REVISION": "r2"})
    assert first != inputs_digest(context=tmp_path, variant="slim", base_id="sha256:1", buildargs=args)
    assert first != inputs_digest(context=tmp_path, variant="full", base_id="sha256:2", buildargs=args)
    assert first != inputs_digest(context=tmp_path, variant="full", base_id="sha256:1",
                                  buildargs={**args, "VERSION": "2"})
    (tmp_path / "extra.cfg").write_text("x")
    assert first != inputs_digest(context=tmp_path, variant="full", base_id="sha256:1", buildargs=args)


def test_base_explicit_and_local_is_used_without_pulling():
    api = FakeAPI(present={"my/debian:12"})
    got = resolve_base_image(api=api, base_image="my/debian:12", context=toolbox_context_dir(), progress=print)
    assert got == "my/debian:12" and api.pulled == []


def test_base_falls_back_to_the_offline_tag_with_a_warning():
    api = FakeAPI(present={OFFLINE_BASE_IMAGE})
    lines: list[str] = []
    got = resolve_base_image(api=api, base_image=None, context=toolbox_context_dir(), progress=lines.append)
    assert got == OFFLINE_BASE_IMAGE
    assert api.pulled == [pinned_base_image()]
    assert any(line.startswith("warning:") and "not pinned by digest" in line for line in lines)


def test_base_pinned_is_pulled_when_a_registry_answers():
    api = FakeAPI(present={OFFLINE_BASE_IMAGE}, pull_error=None)
    got = resolve_base_image(api=api, base_image=None, context=toolbox_context_dir(), progress=lambda _: None)
    assert got == pinned_base_image()


def test_explicit_base_never_falls_back():
    api = FakeAPI(present={OFFLINE_BASE_IMAGE})
    with pytest.raises(ImageMissing) as caught:
        resolve_base_image(api=api, base_image="nope:1", context=toolbox_context_dir(), progress=lambda _: None)
    assert "registry unreachable" in str(caught.value) and "--base-image" in str(caught.value)


def test_no_base_at_all_is_an_image_missing_error():
    with pytest.raises(ImageMissing):
        resolve_base_image(api=FakeAPI(), base_image=None, context=toolbox_context_dir(), progress=lambda _: None)


def test_bad_tag_and_variant_are_refused_before_any_engine_call():
    with pytest.raises(InvalidInput):
        build_toolbox(tag="has space", engine=object())
    with pytest.raises(InvalidInput):
        build_toolbox(variant="huge", engine=object())  # type: ignore[arg-type]


def test_ref_command_prints_the_reference(monkeypatch):
    monkeypatch.delenv("DEBUGKIT_IMAGE", raising=False)
    result = CliRunner().invoke(toolbox, ["ref"])
    assert result.exit_code == 0 and result.output == f"debugkit/toolbox:{__version__}\n"
    result = CliRunner().invoke(toolbox, ["ref", "--variant", "slim"])
    assert result.output == f"debugkit/toolbox:{__version__}-slim\n"


def test_unreachable_engine_maps_to_its_exit_code(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code = toolbox_main(["build", "-q"])
    assert code == ExitCode.ENGINE_UNREACHABLE
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in capsys.readouterr().err


def test_importing_the_toolbox_modules_does_not_import_docker():
    code = "import sys, debugkit.toolbox.build, debugkit.cli.toolbox; print('docker' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
