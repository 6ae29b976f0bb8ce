"""`debugkit toolbox push`: destinations, the engine's push stream, errors and their exit
codes, and --set-default, against a fake engine API (the real registry is in
tests/integration/toolbox/test_push.py)."""
from __future__ import annotations

import pytest
from debugkit import __version__
from debugkit.core.errors import ExitCode, ImageMissing, InvalidInput
from debugkit.toolbox import push as pushing
from debugkit.toolbox.push import Destination, RegistryRefused, RegistryUnreachable

FULL, SLIM = f"debugkit/toolbox:{__version__}", f"debugkit/toolbox:{__version__}-slim"
DIGEST = {"full": "sha256:" + "1" * 64, "slim": "sha256:" + "2" * 64}


class FakeAPI:
    """The engine (runtimes/docker/images.ImageEngine's calls): local images by reference,
    and a push stream like dockerd's."""

    host = "unix:///fake.sock"

    def __init__(self, present=(FULL, SLIM), error: str | None = None):
        self.present = set(present)
        self.error = error
        self.tags: list[tuple[str, str, str]] = []
        self.pushed: list[str] = []
        self.closed = False

    def inspect_image(self, ref):
        if ref not in self.present:
            return None
        return {"Id": "sha256:" + ("a" if ref == FULL else "b") * 64}

    def tag(self, source, repository, tag):
        self.tags.append((source, repository, tag))
        self.present.add(f"{repository}:{tag}")

    def close(self):
        self.closed = True

    def push(self, repository, tag):
        self.pushed.append(f"{repository}:{tag}")
        variant = "slim" if tag.endswith("-slim") else "full"
        yield {"status": f"The push refers to repository [{repository}]"}
        yield {"status": "Preparing", "progressDetail": {}, "id": "9f2e0c1d2b3a"}
        if self.error:
            yield {"errorDetail": {"message": self.error}, "error": self.error}
            return
        yield {"status": "Pushing", "progressDetail": {"current": 512, "total": 1024}, "id": "9f2e0c1d2b3a"}
        yield {"status": "Pushed", "progressDetail": {}, "id": "9f2e0c1d2b3a"}
        yield {"status": "Layer already exists", "progressDetail": {}, "id": "00aa11bb22cc"}
        yield {"status": f"{tag}: digest: {DIGEST[variant]} size: 528"}
        yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": DIGEST[variant], "Size": 528}}


def test_destinations_default_tag_and_slim_suffix():
    targets = pushing.destinations("registry.example.com:5000/team/toolbox", {"full": FULL, "slim": SLIM})
    assert [(d.variant, d.source, d.ref) for d in targets] == [
        ("full", FULL, f"registry.example.com:5000/team/toolbox:{__version__}"),
        ("slim", SLIM, f"registry.example.com:5000/team/toolbox:{__version__}-slim"),
    ]
    (only,) = pushing.destinations("r.example/t:2", {"slim": SLIM})
    assert only.ref == "r.example/t:2-slim"


@pytest.mark.parametrize("text, why", [
    ("Team/Toolbox", "lower-case"),
    ("", "must not be empty"),
    ("r.example/t@sha256:" + "0" * 64, "not a digest"),
    ("r.example/t:1@sha256:" + "0" * 64, "not a digest"),
    ("0123456789abcdef", "image ID"),
    ("r.example/t:" + "x" * 124, "too long"),
    ("r.example/t:has space", "no spaces"),
])
def test_bad_references_are_refused(text, why):
    with pytest.raises(InvalidInput, match=why) as err:
        pushing.parse_destination(text)
    assert err.value.exit_code == ExitCode.INVALID_INPUT == 64


def test_push_tags_pushes_and_returns_the_pinned_references():
    api = FakeAPI()
    events = []
    targets = pushing.destinations("127.0.0.1:5000/dk/toolbox:t", {"full": FULL, "slim": SLIM})
    results = pushing.push_toolbox(targets, engine=api, progress=lambda k, d: events.append(k))
    assert [r.pinned for r in results] == [f"127.0.0.1:5000/dk/toolbox@{DIGEST['full']}",
                                           f"127.0.0.1:5000/dk/toolbox@{DIGEST['slim']}"]
    assert api.tags == [(FULL, "127.0.0.1:5000/dk/toolbox", "t"), (SLIM, "127.0.0.1:5000/dk/toolbox", "t-slim")]
    assert api.pushed == ["127.0.0.1:5000/dk/toolbox:t", "127.0.0.1:5000/dk/toolbox:t-slim"]
    assert (results[0].uploaded, results[0].present) == (1, 1)
    assert events[0] == "start" and "layer" in events and events.count("pushed") == 2


def test_nothing_is_pushed_when_a_variant_is_not_built():
    api = FakeAPI(present=(FULL,))
    targets = pushing.destinations("r.example/t", {"full": FULL, "slim": SLIM})
    with pytest.raises(ImageMissing) as err:
        pushing.push_toolbox(targets, engine=api)
    assert err.value.exit_code == 71 and "debugkit toolbox build --variant slim" in err.value.hint
    assert api.pushed == []


@pytest.mark.parametrize("message, kind, code", [
    ('Get "http://127.0.0.1:5001/v2/": dial tcp 127.0.0.1:5001: connect: connection refused',
     RegistryUnreachable, 69),
    ('Get "https://nope.invalid/v2/": dial tcp: lookup nope.invalid on 10.0.0.53:53: no such host',
     RegistryUnreachable, 69),
    ('Get "https://r.example:5000/v2/": http: server gave HTTP response to HTTPS client', RegistryUnreachable, 69),
    ('Get "https://r.example/v2/": x509: certificate signed by unknown authority', RegistryUnreachable, 69),
    ("received unexpected HTTP status: 503 Service Unavailable", RegistryUnreachable, 69),
    ("no basic auth credentials", RegistryRefused, 78),
    ("denied: requested access to the resource is denied", RegistryRefused, 78),
    ("unauthorized: authentication required", RegistryRefused, 78),
    ("unknown: Forbidden", RegistryRefused, 78),
])
def test_registry_errors_map_to_exit_codes(message, kind, code):
    api = FakeAPI(error=message)
    targets = pushing.destinations("r.example:5000/t", {"full": FULL})
    with pytest.raises(kind) as err:
        pushing.push_toolbox(targets, engine=api)
    assert err.value.exit_code == code
    assert message in err.value.message and "r.example:5000" in err.value.message
    if code == 78:
        assert "docker login r.example:5000" in err.value.hint


def test_registry_of():
    assert pushing.registry_of("team/toolbox") == "docker.io"
    assert pushing.registry_of("localhost/toolbox") == "localhost"
    assert pushing.registry_of("127.0.0.1:5000/a/b") == "127.0.0.1:5000"
    assert pushing.registry_of("ghcr.io/o/r") == "ghcr.io"


def test_the_digest_comes_from_the_status_line_when_the_engine_sends_no_aux():
    class StatusOnly(FakeAPI):  # Docker 29 with the containerd image store
        def push(self, repository, tag):
            yield {"status": f"The push refers to repository [{repository}]"}
            yield {"status": "Mounted from other/repo", "progressDetail": {}, "id": "75378e0c6207"}
            yield {"status": f"{tag}: digest: {DIGEST['full']} size: 537"}

    (pushed,) = pushing.push_toolbox([Destination("full", FULL, "r.example/t", "1")], engine=StatusOnly())
    assert pushed.pinned == f"r.example/t@{DIGEST['full']}"


def test_a_push_without_a_digest_is_an_error():
    class NoDigest(FakeAPI):
        def push(self, repository, tag):
            yield {"status": "Pushed", "id": "x"}

    with pytest.raises(Exception, match="no digest"):
        pushing.push_toolbox([Destination("full", FULL, "r.example/t", "1")], engine=NoDigest())


# -- the command ------------------------------------------------------------------------------

def cli_module():
    """debugkit.cli.toolbox the module (the package's `toolbox` attribute is the click group)."""
    import importlib

    return importlib.import_module("debugkit.cli.toolbox")


@pytest.fixture
def engine(monkeypatch):
    api = FakeAPI()
    monkeypatch.setattr("debugkit.toolbox.build.connect_engine", lambda engine=None, **where: engine or api)
    monkeypatch.delenv("DEBUGKIT_IMAGE", raising=False)
    return api


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    """`debugkit toolbox push ARGS` through the real entry point (exit codes included)."""
    from types import SimpleNamespace

    from debugkit.cli import main
    from debugkit.session import config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DEBUGKIT_CONFIG", raising=False)

    def run(*args):
        config.use(None)
        capsys.readouterr()
        try:
            main(["toolbox", "push", *args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(exit_code=code, stdout=out.out, stderr=out.err, output=out.out + out.err)

    yield run
    config.use(None)


def test_command_prints_one_pinned_reference_per_line_full_first(engine, cli):
    result = cli("127.0.0.1:5000/dk/toolbox:t")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"127.0.0.1:5000/dk/toolbox@{DIGEST['full']}",
                                          f"127.0.0.1:5000/dk/toolbox@{DIGEST['slim']}"]
    assert "pushed debugkit/toolbox:0.1.0 as 127.0.0.1:5000/dk/toolbox:t" in result.stderr


def test_default_pushes_only_the_variants_that_are_built(engine, cli):
    engine.present.discard(SLIM)
    result = cli("r.example/t")
    assert result.exit_code == 0 and result.stdout == f"r.example/t@{DIGEST['full']}\n"
    assert engine.pushed == [f"r.example/t:{__version__}"]


def test_nothing_built_is_exit_71_with_the_build_command(engine, cli):
    engine.present.clear()
    result = cli("r.example/t")
    assert result.exit_code == 71 and "debugkit toolbox build" in result.stderr


def test_an_asked_for_variant_that_is_missing_is_exit_71(engine, cli):
    engine.present.discard(SLIM)
    result = cli("r.example/t", "--variant", "all")
    assert result.exit_code == 71 and "--variant slim" in result.stderr and engine.pushed == []


def test_set_default_writes_the_full_variants_pinned_reference(engine, cli, tmp_path):
    result = cli("r.example/t", "--set-default")
    assert result.exit_code == 0, result.output
    path = tmp_path / "xdg" / "debugkit" / "config.yaml"
    assert f"image: r.example/t@{DIGEST['full']}\n" in path.read_text()
    assert f"created {path}" in result.stderr


def test_set_default_for_a_context(engine, cli, tmp_path):
    path = tmp_path / "xdg" / "debugkit" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("# mine\nimage: debugkit/toolbox:0.1.0  # local\ncontexts:\n  other: {namespace: x}\n")
    result = cli("r.example/t", "--set-default", "--context", "kind-debugkit")
    assert result.exit_code == 0, result.output
    assert path.read_text() == ("# mine\nimage: debugkit/toolbox:0.1.0  # local\ncontexts:\n  other: {namespace: x}\n"
                                f"  kind-debugkit:\n    image: r.example/t@{DIGEST['full']}\n")
    assert f"set contexts.kind-debugkit.image in {path}:6" in result.stderr


def test_set_default_names_what_still_overrides_it(engine, cli, tmp_path, monkeypatch):
    path = tmp_path / "xdg" / "debugkit" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("contexts:\n  prod: {image: x/y:1}\n")
    monkeypatch.setenv("DEBUGKIT_IMAGE", "debugkit/toolbox:0.1.0")
    result = cli("r.example/t", "--set-default")
    assert result.exit_code == 0, result.output
    assert "DEBUGKIT_IMAGE is set in the environment" in result.stderr
    assert "these kube contexts keep their own image: prod" in result.stderr


def test_an_invalid_config_file_stops_set_default_before_the_push(engine, cli, tmp_path):
    path = tmp_path / "xdg" / "debugkit" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("nonsense_key: 1\n")
    result = cli("r.example/t", "--set-default")
    assert result.exit_code == ExitCode.CONFIG_INVALID and engine.pushed == []


@pytest.mark.parametrize("args", [["--context", "x"], ["--variant", "slim", "--set-default"],
                                  ["--set-default", "--context", ""], ["--set-default", "--context", "a\tb"]])
def test_option_combinations_that_make_no_sense_are_usage_errors(engine, cli, args):
    result = cli("r.example/t", *args)
    assert result.exit_code == 2 and engine.pushed == []


def test_a_bad_reference_is_exit_64_before_the_engine_is_asked(monkeypatch, cli):
    monkeypatch.setattr("debugkit.toolbox.build.connect_engine",
                        lambda *a, **k: pytest.fail("the engine was contacted"))
    result = cli("Not/A Ref")
    assert result.exit_code == 64
