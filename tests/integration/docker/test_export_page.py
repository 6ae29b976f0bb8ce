"""`audit export --html` of a real recorded session, opened from a file:// URL in headless
Chromium with the network off: the record is on the page, the bundled player shows, plays
the recording to its end, and its terminal holds what the session printed."""
from __future__ import annotations

import os
import shutil

from tests.helpers import audit_records, run_cli
from tests.integration.chromium import Chromium

SCRIPT = "echo page-out-1; sleep 0.3; echo page-err-2 >&2; sleep 0.3; echo page-out-3"


def test_the_exported_page_plays_the_recording_offline(start_target, toolbox_image, audit_log, tmp_path):
    target = start_target("named-user")
    reason = "INC-7 <b>why</b> & how"
    assert run_cli("attach", "--record", "--reason", reason, target.name, "--", "sh", "-c", SCRIPT).returncode == 0
    session = audit_records(audit_log)[0]["session"]
    page = tmp_path / "session.html"
    exported = run_cli("audit", "export", session, "--html", str(page))
    assert exported.returncode == 0, exported.stderr
    assert os.stat(page).st_mode & 0o777 == 0o600
    html = page.read_text()
    assert "INC-7 &lt;b&gt;why&lt;/b&gt; &amp; how" in html  # the reason is text on the page, not markup
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace("http://localhost/", "")

    browser = Chromium()
    try:
        browser.call("Page.navigate", {"url": page.as_uri()})
        browser.wait_for("document.readyState === 'complete'", what="the page to load")
        assert browser.evaluate("navigator.onLine") is False  # no network in Chromium's namespace
        record = browser.evaluate("document.getElementById('record').innerText")
        assert session in record and reason in record and target.name in record
        browser.wait_for("!!document.querySelector('#player .ap-player')", what="the player to show")
        browser.evaluate("window.debugkitPlayer.play()")
        browser.wait_for("window.debugkitEnded === true", timeout=30, what="the recording to play to its end")
        terminal = browser.wait_for("document.querySelector('#player .ap-term-text, #player .ap-term')"
                                    "?.innerText || ''", what="the player's terminal text")
        assert terminal.index("page-out-1") < terminal.index("page-err-2") < terminal.index("page-out-3"), terminal
        shot = browser.screenshot(tmp_path / "exported-page.png")
    finally:
        browser.close()
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("DEBUGKIT_KEEP_SCREENSHOT")
    if keep:  # for a person to look at
        shutil.copy(shot, keep)
