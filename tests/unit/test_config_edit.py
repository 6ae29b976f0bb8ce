"""`toolbox push --set-default` writes the config file: line edits that keep a person's
comments and layout, a rewrite (with a backup) where that is not possible, validation by
config.load(), and an atomic replacement."""
from __future__ import annotations

import os
from pathlib import Path
import stat

import pytest

from debugkit.core.errors import ConfigInvalid, InvalidInput
from debugkit.session import config, config_edit
from debugkit.session.config_edit import set_image

PINNED = "127.0.0.1:5000/debugkit/toolbox@sha256:" + "a" * 64
OTHER = "registry.example.com/team/toolbox@sha256:" + "b" * 64

COMMENTED = """\
# my debugkit settings
profile: restricted   # keep it tight
image: debugkit/toolbox:0.1.0  # the local one

contexts:
  # production cluster
  prod:
    namespace: payments   # team ns
  staging: {namespace: stage}
  # trailing comment about contexts

timeout: 60   # seconds
runbook_paths: [runbooks]
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


def effective(path, key="image", context=None):
    return config.load(path).effective(key, runtime="kubernetes", kube_context=context).value


def test_global_image_is_replaced_on_its_own_line_and_comments_stay(tmp_path):
    path = write(tmp_path, COMMENTED)
    edit = set_image(PINNED, path=path)
    text = path.read_text()
    assert edit.how == "edited" and edit.key == "image" and edit.where == f"{path}:3"
    assert text.splitlines()[2] == f"image: {PINNED}  # the local one"
    assert comments(text) == comments(COMMENTED)
    assert text.replace(PINNED, "debugkit/toolbox:0.1.0") == COMMENTED  # nothing else moved
    assert effective(path) == PINNED
    assert not list(tmp_path.glob(".config.yaml.*"))  # no temporary file left
    assert not (tmp_path / "config.yaml.bak").exists()


def test_global_image_is_added_at_the_end_when_missing(tmp_path):
    path = write(tmp_path, "# only a comment\nprofile: restricted # why\n")
    edit = set_image(PINNED, path=path)
    assert path.read_text() == f"# only a comment\nprofile: restricted # why\nimage: {PINNED}\n"
    assert edit.where == f"{path}:3"


def test_a_file_without_a_final_newline_gets_one_before_the_new_line(tmp_path):
    path = write(tmp_path, "profile: restricted")
    set_image(PINNED, path=path)
    assert path.read_text() == f"profile: restricted\nimage: {PINNED}\n"


def test_context_entry_image_is_added_before_its_first_key(tmp_path):
    path = write(tmp_path, COMMENTED)
    edit = set_image(PINNED, path=path, context="prod")
    lines = path.read_text().splitlines()
    assert lines[6:9] == ["  prod:", f"    image: {PINNED}", "    namespace: payments   # team ns"]
    assert edit.key == "contexts.prod.image" and edit.where == f"{path}:8"
    assert comments(path.read_text()) == comments(COMMENTED)
    assert effective(path, context="prod") == PINNED
    assert effective(path) == "debugkit/toolbox:0.1.0"  # the global one is untouched
    assert effective(path, "namespace", context="prod") == "payments"


def test_context_entry_image_is_replaced_in_place(tmp_path):
    path = write(tmp_path, f"contexts:\n  prod:\n    image: {OTHER}   # pinned last week\n    namespace: x\n")
    set_image(PINNED, path=path, context="prod")
    assert path.read_text() == f"contexts:\n  prod:\n    image: {PINNED}   # pinned last week\n    namespace: x\n"


def test_flow_style_context_entry_keeps_its_style(tmp_path):
    path = write(tmp_path, COMMENTED)
    set_image(PINNED, path=path, context="staging")
    line = path.read_text().splitlines()[8]
    assert line == f"  staging: {{image: '{PINNED}', namespace: stage}}"
    assert effective(path, context="staging") == PINNED
    set_image(OTHER, path=path, context="staging")  # and replaced in place the second time
    assert path.read_text().splitlines()[8] == f"  staging: {{image: '{OTHER}', namespace: stage}}"


def test_new_context_goes_after_the_last_entry_with_the_files_indentation(tmp_path):
    path = write(tmp_path, "contexts:\n    prod:\n        namespace: payments\n# about timeout\ntimeout: 60\n")
    set_image(PINNED, path=path, context="kind-debugkit")
    assert path.read_text() == ("contexts:\n    prod:\n        namespace: payments\n"
                                f"    kind-debugkit:\n        image: {PINNED}\n# about timeout\ntimeout: 60\n")


def test_new_context_after_a_multi_line_flow_entry(tmp_path):
    path = write(tmp_path, "contexts:\n  a: {namespace: x,\n      image: y/z:1\n  }\ntimeout: 5\n")
    set_image(PINNED, path=path, context="b")
    assert effective(path, context="b") == PINNED and effective(path, context="a") == "y/z:1"
    assert path.read_text().endswith(f"  }}\n  b:\n    image: {PINNED}\ntimeout: 5\n")


def test_new_context_after_a_block_scalar(tmp_path):
    path = write(tmp_path, "contexts:\n  a:\n    namespace: |-\n      team\n# end\n")
    set_image(PINNED, path=path, context="b")
    assert path.read_text() == f"contexts:\n  a:\n    namespace: |-\n      team\n  b:\n    image: {PINNED}\n# end\n"


def test_contexts_key_is_added_when_missing(tmp_path):
    path = write(tmp_path, "image: debugkit/toolbox:0.1.0 # local\n")
    set_image(PINNED, path=path, context="kind-debugkit")
    assert path.read_text() == (f"image: debugkit/toolbox:0.1.0 # local\ncontexts:\n  kind-debugkit:\n"
                                f"    image: {PINNED}\n")


@pytest.mark.parametrize("name", ["arn:aws:eks:eu-west-1:123456789012:cluster/prod", "user@cluster",
                                  "gke_project_europe-west1_prod", "has space", "- dash", "yes", "123",
                                  "#hash", "*star"])
def test_awkward_context_names_are_quoted_as_yaml_needs(tmp_path, name):
    path = write(tmp_path, "contexts:\n  other: {namespace: x}\n")
    set_image(PINNED, path=path, context=name)
    cfg = config.load(path)
    assert cfg.contexts[name]["image"].value == PINNED
    assert cfg.contexts["other"]["namespace"].value == "x"


def test_a_missing_file_is_created_with_its_directory(tmp_path):
    path = tmp_path / "new" / "dir" / "config.yaml"
    edit = set_image(PINNED, path=path, context="prod")
    assert edit.how == "created"
    assert config.load(path).contexts["prod"]["image"].value == PINNED
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_crlf_files_stay_crlf(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# windows\r\nprofile: restricted\r\ncontexts:\r\n  a:\r\n    namespace: x\r\n")
    set_image(PINNED, path=path, context="b")
    set_image(PINNED, path=path)
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.startswith(b"# windows\r\n")
    cfg = config.load(path)
    assert cfg.contexts["b"]["image"].value == PINNED and cfg.values["image"].value == PINNED


@pytest.mark.parametrize("text, context", [
    ("{image: debugkit/toolbox:0.1.0, profile: restricted}\n", None),   # flow-style top level
    ("# c\ncontexts: {prod: {namespace: x}}\n", "prod"),                  # flow-style contexts
    ("# c\ncontexts: {}\n", "prod"),                                     # an empty flow contexts
    ("# c\nimage: |-\n  debugkit/toolbox:0.1.0\n", None),                # a block scalar
])
def test_layouts_that_allow_no_line_edit_are_rewritten_with_a_backup(tmp_path, text, context):
    path = write(tmp_path, text)
    edit = set_image(PINNED, path=path, context=context)
    assert edit.how == "rewritten" and edit.backup == tmp_path / "config.yaml.bak"
    assert edit.backup.read_text() == text
    assert "was rewritten" in edit.describe() and str(edit.backup) in edit.describe()
    assert path.read_text().startswith("# Rewritten by `debugkit toolbox push --set-default`")
    assert effective(path, context=context) == PINNED


def test_everything_else_in_the_file_keeps_its_value(tmp_path):
    path = write(tmp_path, COMMENTED + "runtimes:\n  kubernetes: {image: x/y:1}\nlimits: {memory: 512m}\n")
    before = config_edit._snapshot(config.load(path))
    set_image(PINNED, path=path, context="new")
    after = config_edit._snapshot(config.load(path))
    assert after["contexts"].pop("new") == {"image": PINNED}
    assert after == before


def test_an_invalid_file_is_refused_and_left_alone(tmp_path):
    text = "image: debugkit/toolbox:0.1.0\nunknown_key: 1\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigInvalid, match="unknown_key"):
        set_image(PINNED, path=path)
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("text", ["contexts:\n  prod:\n", "contexts:\n", "- a list\n"])
def test_entries_the_loader_refuses_are_not_edited(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigInvalid):
        set_image(PINNED, path=path, context="prod")
    assert path.read_text() == text


def test_a_bad_reference_is_refused_before_the_file_is_touched(tmp_path):
    path = write(tmp_path, COMMENTED)
    with pytest.raises(InvalidInput):
        set_image("Not A Ref", path=path)
    assert path.read_text() == COMMENTED


def test_a_line_edit_that_does_not_validate_falls_back_to_a_rewrite(tmp_path, monkeypatch):
    path = write(tmp_path, COMMENTED)
    monkeypatch.setattr(config_edit, "_edit_in_place", lambda text, ref, context: text + "image: [broken\n")
    edit = set_image(PINNED, path=path, context="prod")
    assert edit.how == "rewritten"
    assert effective(path, context="prod") == PINNED and effective(path, "timeout") == "60"


def test_a_result_that_says_something_else_is_never_written(tmp_path, monkeypatch):
    path = write(tmp_path, COMMENTED)
    wrong = COMMENTED.replace("timeout: 60", "timeout: 61") + f"image2: x\n"
    monkeypatch.setattr(config_edit, "_edit_in_place", lambda text, ref, context: wrong)
    monkeypatch.setattr(config_edit, "_rewritten", lambda original, ref, context, backup: wrong)
    with pytest.raises(ConfigInvalid):
        set_image(PINNED, path=path)
    assert path.read_text() == COMMENTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_the_file_is_replaced_atomically_by_rename(tmp_path, monkeypatch):
    """The original is never opened for writing: a new file is written beside it and
    renamed over it, so a reader sees the old file or the new one, never half of one."""
    path = write(tmp_path, COMMENTED)
    inode = path.stat().st_ino
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.path.dirname(os.fspath(src)), os.fspath(dst)))
        assert path.read_text() == COMMENTED  # still whole and unchanged just before the rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    set_image(PINNED, path=path)
    assert renames == [(str(tmp_path), str(path))]
    assert path.stat().st_ino != inode


def test_a_failed_write_leaves_the_original_and_no_temporary_file(tmp_path, monkeypatch):
    path = write(tmp_path, COMMENTED)

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ConfigInvalid, match="No space left on device; it was not changed"):
        set_image(PINNED, path=path)
    assert path.read_text() == COMMENTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_file_changed_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    path = write(tmp_path, COMMENTED)
    real = config_edit._validated

    def meanwhile(*args, **kwargs):
        loaded = real(*args, **kwargs)
        if kwargs.get("candidate") is not None:
            path.write_text(COMMENTED + "keep_alive: 5m\n")  # someone else saves the file
        return loaded

    monkeypatch.setattr(config_edit, "_validated", meanwhile)
    with pytest.raises(ConfigInvalid, match="changed while"):
        set_image(PINNED, path=path)
    assert path.read_text() == COMMENTED + "keep_alive: 5m\n"


def test_mode_is_kept_and_a_symlink_is_followed(tmp_path):
    real = tmp_path / "dotfiles" / "debugkit.yaml"
    real.parent.mkdir()
    real.write_text(COMMENTED)
    real.chmod(0o600)
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    edit = set_image(PINNED, path=link)
    assert link.is_symlink() and edit.path == real
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert config.load(link).values["image"].value == PINNED


def test_an_unwritable_directory_is_a_config_error():
    """As an unprivileged user (a forked child drops to nobody when the tests run as root,
    who writes anywhere): one ConfigInvalid, and the file unchanged."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="debugkit-config-ro-", dir="/tmp"))
    try:
        # Every module set_image imports lazily, imported here: the child, as nobody, may
        # not be able to read the interpreter's own library (root's home is private).
        warm = base / "warm"
        warm.mkdir()
        set_image(PINNED, path=write(warm, COMMENTED))
        base.chmod(0o755)
        path = write(base, COMMENTED)
        path.chmod(0o644)
        base.chmod(0o555)  # nobody may not write here; the owner is root
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 3
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                try:
                    set_image(PINNED, path=path)
                    code = 1
                except ConfigInvalid as exc:
                    code = 0 if "cannot write" in str(exc) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "set_image did not refuse with 'cannot write'"
        assert path.read_text() == COMMENTED
    finally:
        base.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_config_path_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigInvalid):
        set_image(PINNED, path=tmp_path / "afile" / "config.yaml")
