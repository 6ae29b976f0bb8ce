"""Writing one value into the configuration file: the toolbox image, globally or for one
kube context (`debugkit toolbox push --set-default [--context NAME]`).

The file is a person's: its comments, order and layout stay. The edit is made on the
text, at the places the YAML parser reports: the value of a top-level `image:` key is
replaced in place, as is a context's `image:`; a missing key is added as a line (a new
`image:` at the end, a new context after the last entry of `contexts:`, a context's
`image:` before its first key). Where the file's shape does not allow that (a flow-style
`{...}` top level or `contexts:`, an empty entry, a block scalar), the file is rewritten
from its data instead: comments are lost then, the previous file is kept as FILE.bak,
and the result says so.

Either way the new text is checked before it replaces the file: loaded by config.load(),
it must hold the new value where it was asked for and every other setting unchanged.
It is written to a temporary file in the same directory and renamed over the original
(atomic on POSIX); a symlinked file is edited where it points. A file changed by someone
else between our read and our rename is left alone (ConfigInvalid, nothing written).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from debugkit.core.errors import ConfigInvalid
from debugkit.core.imageref import validate_image_ref
from debugkit.session import config

HEADER_REWRITTEN = ("# Rewritten by `debugkit toolbox push --set-default`: the previous file, with its comments,\n"
                    "# is {backup}.\n")


@dataclass(frozen=True)
class Edit:
    """What set_image() did."""

    path: Path                  # the file written (a symlink's target)
    key: str                    # "image" or "contexts.NAME.image"
    where: str                  # FILE:LINE of the new value
    how: str                    # "created", "edited", "rewritten"
    backup: Path | None = None  # the previous file, when it was rewritten

    def describe(self) -> str:
        if self.how == "created":
            return f"created {self.path} with {self.key} (at {self.where})"
        if self.how == "rewritten":
            return (f"set {self.key} in {self.where}, but the file's layout did not allow a line edit: it was "
                    f"rewritten from its data, without its comments; the previous file is {self.backup}")
        return f"set {self.key} in {self.where}"


def set_image(ref: str, *, path: Path, context: str | None = None) -> Edit:
    """Make `ref` the toolbox image in the config file at `path`: the global `image:` key,
    or with `context` that kube context's `contexts: {NAME: {image: REF}}` entry."""
    validate_image_ref(ref, flag="image")
    if context is not None and (not context or any(not ch.isprintable() for ch in context)):
        raise ConfigInvalid(f"invalid kube context name {context!r}")
    key = "image" if context is None else f"contexts.{context}.image"
    real = Path(os.path.realpath(path))
    original = _read(real)
    try:
        if original is None:
            text, how, before = _new_file(ref, context), "created", None
        else:
            before = config.load(real, required=True)   # refuse to edit a file that is already wrong
            text, how = _edit_in_place(original, ref, context), "edited"
            if text is not None:
                try:
                    _validated(text, real, ref, context, before)
                except ConfigInvalid:
                    text = None                          # the line edit went wrong: rewrite instead
            if text is None:
                text, how = _rewritten(original, ref, context, backup=_backup_path(real)), "rewritten"
        loaded = _write_checked(real, text, original, ref, context, before,
                                backup=_backup_path(real) if how == "rewritten" else None)
    except OSError as exc:
        raise ConfigInvalid(f"{real}: cannot write the configuration file: {exc.strerror or exc}; it was not "
                            f"changed") from None
    setting = loaded.values["image"] if context is None else loaded.contexts[context]["image"]
    line = setting.source.rpartition(":")[2]  # the source names the checked temporary file
    return Edit(path=real, key=key, where=f"{real}:{line}", how=how,
                backup=_backup_path(real) if how == "rewritten" else None)


# -- reading and writing ---------------------------------------------------------------------

def _read(path: Path) -> str | None:
    from debugkit.core import yamlsafe

    try:
        with open(path, "rb") as fh:
            data = fh.read(config.MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigInvalid(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    return yamlsafe.decode(data, str(path), max_bytes=config.MAX_BYTES, fail=ConfigInvalid)


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _snapshot(cfg: config.Config | None) -> dict:
    """Every value the file sets, without where it came from (line numbers move)."""
    if cfg is None:
        return {"values": {}, "runtimes": {}, "contexts": {}, "runbook_paths": ()}
    return {
        "values": {k: s.value for k, s in cfg.values.items()},
        "runtimes": {rt: {k: s.value for k, s in entry.items()} for rt, entry in cfg.runtimes.items()},
        "contexts": {ctx: {k: s.value for k, s in entry.items()} for ctx, entry in cfg.contexts.items()},
        "runbook_paths": cfg.runbook_paths,
    }


def _validated(text: str, path: Path, ref: str, context: str | None, before: config.Config | None,
               *, candidate: Path | None = None) -> config.Config:
    """Load the new text (from `candidate`, a file beside `path`, or a scratch copy) and
    check that it says exactly what the old one did, but for the new value."""
    import tempfile

    expected = _snapshot(before)
    if context is None:
        expected["values"]["image"] = ref
    else:
        expected["contexts"].setdefault(context, {})["image"] = ref
    scratch = None
    if candidate is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=str(path.parent))
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        scratch = candidate = Path(name)
    try:
        loaded = config.load(candidate, required=True)
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    got = _snapshot(loaded)
    if got != expected:
        raise ConfigInvalid(f"{path}: the edited file would not say what was asked for; it was not changed")
    return loaded


def _write_checked(path: Path, text: str, original: str | None, ref: str, context: str | None,
                   before: config.Config | None, *, backup: Path | None) -> config.Config:
    """Write text beside path, check it, keep a backup when asked, rename it over path."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _copy_mode(path, tmp)
        loaded = _validated(text, path, ref, context, before, candidate=tmp)
        if _read(path) != original:
            raise ConfigInvalid(f"{path} changed while debugkit was editing it; it was left as it is now "
                                f"(run the command again)")
        if backup is not None and original is not None:
            _atomic_copy(original, backup, mode_from=path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return loaded
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_mode(original: Path, tmp: Path) -> None:
    """The original's permission bits; for a new file, what the umask allows of 0666."""
    try:
        mode = original.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def _atomic_copy(text: str, dest: Path, *, mode_from: Path) -> None:
    import tempfile

    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=str(dest.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _copy_mode(mode_from, Path(name))
        os.replace(name, dest)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- the text --------------------------------------------------------------------------------

_BIG = 1 << 20  # no line folding


def _block(data: dict) -> str:
    """data as block-style YAML lines, each string quoted only where YAML needs it."""
    import yaml

    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, width=_BIG, allow_unicode=True)


def _scalar(value: str, *, flow: bool) -> str:
    """value as one YAML scalar for a block or a flow (`{...}`) context."""
    import yaml

    if flow:
        return yaml.safe_dump([value], default_flow_style=True, width=_BIG, allow_unicode=True).strip()[1:-1]
    text = yaml.safe_dump(value, default_flow_style=False, width=_BIG, allow_unicode=True)
    return text.split("\n...", 1)[0].strip()


def _entry(ref: str, context: str | None) -> dict:
    return {"image": ref} if context is None else {"contexts": {context: {"image": ref}}}


def _new_file(ref: str, context: str | None) -> str:
    return ("# debugkit configuration (see `debugkit config view`); written by "
            "`debugkit toolbox push --set-default`\n" + _block(_entry(ref, context)))


def _rewritten(original: str, ref: str, context: str | None, *, backup: Path) -> str:
    import yaml

    data = yaml.safe_load(original) or {}
    if not isinstance(data, dict):  # config.load() already refused anything else
        raise ConfigInvalid("the configuration file's top level is not a mapping")
    if context is None:
        data["image"] = ref
    else:
        contexts = data.get("contexts") or {}
        entry = contexts.get(context) or {}
        entry["image"] = ref
        contexts[context] = entry
        data["contexts"] = contexts
    return HEADER_REWRITTEN.format(backup=backup.name) + _block(data)


def _edit_in_place(text: str, ref: str, context: str | None) -> str | None:
    """The text with the value set by a line-level edit, or None where the layout does
    not allow one (the caller then rewrites the file)."""
    import yaml

    from debugkit.core import yamlsafe

    newline = "\r\n" if "\r\n" in text else "\n"
    with yamlsafe.Document(text, "config", fail=ConfigInvalid) as doc:
        root = doc.root
        if root is None:  # empty, or only comments
            return _append(text, _block(_entry(ref, context)), newline)
        if not isinstance(root, yaml.MappingNode) or root.flow_style:
            return None
        top = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        if context is None:
            if "image" in top:
                return _replace_scalar(text, top["image"][1], ref, flow=False)
            return _append(text, _block(_entry(ref, None)), newline)
        if "contexts" not in top:
            return _append(text, _block(_entry(ref, context)), newline)
        contexts = top["contexts"][1]
        if not isinstance(contexts, yaml.MappingNode) or contexts.flow_style or not contexts.value:
            return None
        entries = {k.value: (k, v) for k, v in contexts.value if isinstance(k, yaml.ScalarNode)}
        if context in entries:
            return _set_in_entry(text, entries[context][1], ref, newline)
        return _add_entry(text, contexts, context, ref, newline)


def _append(text: str, block: str, newline: str) -> str:
    if text and not text.endswith("\n"):
        text += newline
    return text + block.replace("\n", newline)


def _replace_scalar(text: str, node, ref: str, *, flow: bool) -> str | None:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
        return None
    start, end = node.start_mark.index, node.end_mark.index
    if start == end:  # `image:` with no value
        return None
    return text[:start] + _scalar(ref, flow=flow) + text[end:]


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _only_indent_before(text: str, node) -> bool:
    start = node.start_mark.index
    return text[_line_start(text, start):start].strip() == ""


def _set_in_entry(text: str, entry, ref: str, newline: str) -> str | None:
    """A context that has an entry: set or add its image."""
    import yaml

    if not isinstance(entry, yaml.MappingNode):
        return None
    inner = {k.value: (k, v) for k, v in entry.value if isinstance(k, yaml.ScalarNode)}
    if "image" in inner:
        return _replace_scalar(text, inner["image"][1], ref, flow=bool(entry.flow_style))
    if entry.flow_style:  # {namespace: x} -> {image: REF, namespace: x}
        brace = entry.start_mark.index
        if text[brace:brace + 1] != "{":
            return None
        item = f"image: {_scalar(ref, flow=True)}" + (", " if entry.value else "")
        return text[:brace + 1] + item + text[brace + 1:]
    first_key = entry.value[0][0]
    if not _only_indent_before(text, first_key):
        return None
    at = _line_start(text, first_key.start_mark.index)
    line = " " * first_key.start_mark.column + f"image: {_scalar(ref, flow=False)}" + newline
    return text[:at] + line + text[at:]


def _end_of_content(node) -> int:
    """Where the last thing written for a node ends: its last scalar, or a flow
    collection's closing bracket (a block collection's own end mark lies beyond the
    comments and blank lines that follow it)."""
    import yaml

    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return max((_end_of_content(child) for child in children), default=node.start_mark.index)


def _add_entry(text: str, contexts, context: str, ref: str, newline: str) -> str | None:
    """A context with no entry yet: a new one after the last entry of `contexts:`."""
    import yaml

    keys = [k for k, _v in contexts.value]
    if not all(_only_indent_before(text, k) for k in keys):
        return None
    column = keys[0].start_mark.column
    step = 2
    for _k, value in contexts.value:  # follow the file's own indentation
        if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
            step = max(1, value.value[0][0].start_mark.column - column)
            break
    end = _end_of_content(contexts.value[-1][1])
    if end > 0 and text[end - 1] == "\n":
        cut = end  # a block scalar (`|`) ends at the start of the line after it
    else:
        cut = text.find("\n", end)
        cut = len(text) if cut < 0 else cut + 1
    block = _block({context: {"image": ref}})
    lines = [(" " * column if i == 0 else " " * (column + step)) + line.strip()
             for i, line in enumerate(block.splitlines())]
    prefix = "" if cut == 0 or text[cut - 1] == "\n" else newline
    return text[:cut] + prefix + newline.join(lines) + newline + text[cut:]
