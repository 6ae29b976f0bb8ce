"""`debugkit audit export SESSION --html FILE`: one self-contained page for a postmortem.

The page holds the session's audit record (who, when, target, identity, profile, reason,
exit status), its recording in the asciinema web player, and a runbook's report. The
player's JS and CSS are the vendored copy inside this package (scripts/vendor-asciinema-
player), inlined, so the page opens with no network. Its Content-Security-Policy allows
only its own inline scripts (by hash) and styles, and no request at all: a recording is
data to the page (JSON in a non-executable script element), never markup.
"""
from __future__ import annotations

import base64
import html
import json
import os
from importlib import resources
from pathlib import Path

from debugkit.core import digest
from debugkit.core.errors import FileInvalid, InvalidInput
from debugkit.session import replay

VENDOR = "vendor/asciinema-player"
# What the page shows of the record, in this order, with these names.
FIELDS = (
    ("session", "Session"), ("start", "Started"), ("end", "Ended"), ("duration_s", "Duration (s)"),
    ("local_user", "Who (local user)"), ("local_uid", "Local UID"), ("sudo_user", "Via sudo, from"),
    ("host", "From host"), ("reason", "Reason"), ("runtime", "Runtime"), ("target", "Target"),
    ("target_id", "Target ID"), ("identity", "Identity (the target's)"), ("sidecar_user", "Sidecar ran as"),
    ("profile", "Profile"), ("privileges", "Privileges"), ("image", "Sidecar image"), ("image_id", "Image ID"),
    ("sidecar", "Sidecar"), ("mode", "Mode"), ("command", "Command"), ("runbook", "Runbook"),
    ("runbook_sha256", "Runbook SHA-256"), ("exit_code", "Exit status"), ("outcome", "Outcome"),
    ("error", "Error"), ("recording", "Recording"), ("recording_sha256", "Recording SHA-256"),
    ("recording_input", "Input recorded"),
)


def player_assets() -> dict:
    """The vendored player: its JS, CSS and what VENDORED.json says of them (version, license)."""
    base = resources.files("debugkit.session").joinpath(VENDOR)
    return {"js": base.joinpath("asciinema-player.min.js").read_text(encoding="utf-8"),
            "css": base.joinpath("asciinema-player.css").read_text(encoding="utf-8"),
            "meta": json.loads(base.joinpath("VENDORED.json").read_text(encoding="utf-8"))}


def _json_for_script(value) -> str:
    """JSON that cannot end its <script> element nor open a comment inside it."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(digest.sha256(script.encode()).digest()).decode() + "'"


def _value(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=1) if isinstance(value, dict) else " ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def _record_rows(entry: dict) -> str:
    rows = []
    for key, label in FIELDS:
        if key in entry:
            rows.append(f"<tr><th>{html.escape(label)}</th><td><pre>{html.escape(_value(entry[key]))}</pre></td></tr>")
    return "\n".join(rows)


def _report_html(report: dict) -> str:
    steps = []
    for number, step in enumerate(report.get("steps") or [], start=1):
        if not isinstance(step, dict):
            continue
        out = "".join(f"<h4>{name}</h4><pre>{html.escape(str(step.get(name) or ''))}</pre>"
                      for name in ("stdout", "stderr") if step.get(name))
        status = html.escape(str(step.get("status", "?")))
        steps.append(f"<section class='step {status}'><h3>{number}. {html.escape(str(step.get('name', '?')))}: "
                     f"{status}</h3><p><code>{html.escape(' '.join(map(str, step.get('argv') or [])))}</code> "
                     f"exit {html.escape(str(step.get('exit_code')))}, {html.escape(str(step.get('reason') or ''))}"
                     f"</p>{out}</section>")
    verdict = "passed" if report.get("passed") else "failed"
    return f"<h2>Runbook report: {verdict}</h2>\n" + "\n".join(steps)


def load_report(entry: dict) -> dict | None:
    path, want = entry.get("report"), entry.get("report_sha256")
    if not isinstance(path, str):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileInvalid(f"cannot read the runbook report {path}: {exc.strerror or exc}") from None
    if isinstance(want, str) and digest.hex_digest(data) != want:
        raise FileInvalid(f"the runbook report {path} was changed since the session ended: not exported")
    return json.loads(data)


def render(entry: dict) -> str:
    """The page for one session of the audit log."""
    assets = player_assets()
    cast = None
    if isinstance(entry.get("recording"), str):
        recording = replay.open_recording(entry)  # refuses a recording that does not match the log
        cast = recording.path.read_text(encoding="utf-8")
    report = load_report(entry)
    session = html.escape(str(entry.get("session")))
    boot = ("(function(){var el=document.getElementById('player');"
            "var cast=JSON.parse(document.getElementById('cast').textContent);"
            "if(cast===null){el.textContent='This session was not recorded.';return;}"
            "var p=AsciinemaPlayer.create({data:cast},el,{fit:'width',idleTimeLimit:2,preload:true,"
            "terminalFontFamily:'monospace'});"
            "window.debugkitPlayer=p;window.debugkitEnded=false;"
            "p.addEventListener('ended',function(){window.debugkitEnded=true;});})();")
    scripts = [assets["js"], boot]
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
           f"script-src 'wasm-unsafe-eval' {' '.join(_csp_hash(s) for s in scripts)}")
    meta = assets["meta"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">
<title>debugkit session {session}</title>
<style>{assets["css"]}</style>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th {{ text-align: left; vertical-align: top; padding: .2em 1em .2em 0; white-space: nowrap; }}
td pre {{ margin: 0; white-space: pre-wrap; word-break: break-all; }}
section.step pre {{ background: #f4f4f4; padding: .5em; white-space: pre-wrap; }}
section.failed h3 {{ color: #a00; }}
#player {{ max-width: 1000px; margin: 1em 0; }}
footer {{ margin-top: 2em; font-size: small; color: #666; }}
</style>
</head>
<body>
<h1>debugkit session {session}</h1>
<p>The client-side audit record of this session, as debugkit wrote it on the operator's machine
(evidence, not a tamper-proof audit: see debugkit's docs/security.md).</p>
<table id="record">
{_record_rows(entry)}
</table>
<h2>Recording</h2>
<div id="player"></div>
{_report_html(report) if report is not None else ""}
<footer>Player: asciinema-player {html.escape(str(meta.get("version")))} ({html.escape(str(meta.get("license")))}),
bundled in this page.</footer>
<script type="application/json" id="cast">{_json_for_script(cast)}</script>
<script>{scripts[0]}</script>
<script>{scripts[1]}</script>
</body>
</html>
"""


def write(entry: dict, destination: str) -> Path:
    """Write the page atomically, mode 0600 (it holds the recording: maybe secrets)."""
    if not destination:
        raise InvalidInput("--html must name a file")
    page = render(entry).encode("utf-8")
    path = Path(destination)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(page)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with_tmp = tmp.exists()
        if with_tmp:
            tmp.unlink()
        raise InvalidInput(f"cannot write {destination}: {exc.strerror or exc}") from None
    return path
