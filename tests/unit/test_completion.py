"""Completion plumbing that needs no engine: bash's word breaks, the time budget, runbooks."""
from __future__ import annotations

import threading
import time

import pytest

from debugkit.cli.completion import _bash_class
from debugkit.cli import cli
from debugkit.session import complete


class Item:
    def __init__(self, value, type="plain"):
        self.value, self.type = value, type


@pytest.mark.parametrize("line, args, incomplete, shown", [
    ("debugkit attach podman://we", ["attach"], "podman://we", "//web"),
    ("debugkit attach --namespace=sh", ["attach"], "--namespace=sh", "web"),
    ("debugkit attach k8s://ns/we", ["attach"], "k8s://ns/we", "//ns/web"),
    ("debugkit attach we", ["attach"], "we", "web"),
    ("debugkit attach ", ["attach"], "", "web"),
    ("debugkit -n shop attach 'pod/w", ["-n", "shop", "attach"], "pod/w", "web"),
])
def test_bash_takes_the_whole_line_and_answers_for_the_word_bash_replaces(monkeypatch, line, args, incomplete,
                                                                           shown):
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_WORDBREAKS", " \t\n\"'><=;|&(:")
    bash = _bash_class()(cli, {}, "debugkit", "_DEBUGKIT_COMPLETE")
    assert bash.get_completion_args() == (args, incomplete)
    answer = {"podman://we": "podman://web", "k8s://ns/we": "k8s://ns/web"}.get(incomplete, "web")
    assert bash.format_completion(Item(answer)) == f"plain,{shown}"


def test_bash_without_comp_line_is_clicks_own(monkeypatch):
    monkeypatch.delenv("COMP_LINE", raising=False)
    monkeypatch.setenv("COMP_WORDS", "debugkit attach we")
    monkeypatch.setenv("COMP_CWORD", "2")
    bash = _bash_class()(cli, {}, "debugkit", "_DEBUGKIT_COMPLETE")
    assert bash.get_completion_args() == (["attach"], "we")
    assert bash.format_completion(Item("web")) == "plain,web"


def test_bounded_keeps_what_answered_in_time_and_leaves_the_rest():
    release = threading.Event()

    def slow():
        release.wait(10)
        return ["late"]

    def broken():
        raise RuntimeError("no")

    started = time.monotonic()
    found = complete.bounded([lambda: ["a"], slow, broken, lambda: ["b"]], budget=0.3)
    elapsed = time.monotonic() - started
    release.set()
    assert found == ["a", "b"]
    assert 0.25 < elapsed < 1.0


def test_nothing_configured_completes_nothing_for_kubernetes_words(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.setenv("CONTAINER_HOST", "tcp://127.0.0.1:1")
    for word in ("pod/", "deploy/", "k8s://", "podman://", "docker://", ""):
        assert complete.targets(word, budget=2) == [], word
    assert complete.namespaces("") == []


def test_runbooks_include_the_configured_paths(monkeypatch, tmp_path):
    from debugkit.session import config

    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "disk-full.yaml").write_text("name: x\nsteps: [{name: a, run: 'true'}]\n")
    (tmp_path / "config.yaml").write_text(f"runbook_paths: [{tmp_path / 'books'}]\n")
    monkeypatch.setenv("DEBUGKIT_CONFIG", str(tmp_path / "config.yaml"))
    config.use(None)
    try:
        assert complete.runbooks("d") == ["dns", "disk-full"]
        assert complete.runbooks("") [:6] == ["dns", "http-health", "node", "processes", "sockets", "tls"]
    finally:
        config.use(None)


# -- names from outside reach the shell as names, never as globs or escape sequences (issue 27, item 17) -----

ESCAPE = "\x1b]0;pwned\x07\x1b[2J"


def test_plain_candidates_are_escaped_for_bash_and_unprintable_ones_left_out(monkeypatch):
    from debugkit.cli.completion import bash_escape

    monkeypatch.delenv("COMP_LINE", raising=False)
    bash = _bash_class()(cli, {}, "debugkit", "_DEBUGKIT_COMPLETE")
    assert bash.format_completion(Item("prod-*[a]?")) == "plain,prod-\\*\\[a\\]\\?"
    assert bash.format_completion(Item("my ctx;rm")) == "plain,my\\ ctx\\;rm"
    assert bash_escape("k8s://ns/web-1") == "k8s://ns/web-1"
    assert complete.presentable(["ok", f"evil{ESCAPE}", "two\nlines", "tab\there", "naïve"]) == ["ok", "naïve"]


def _kubeconfig(path, names):
    contexts = ", ".join(f'{{name: "{n}", context: {{cluster: c, user: u}}}}' for n in names)
    path.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                    f"users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{contexts}]\n")
    return path


def test_kube_contexts_and_runbook_files_are_neither_globbed_nor_escape_sequences_in_real_bash(tmp_path):
    from tests.integration.shells import InteractiveShell, bin_dir

    work = tmp_path / "work"
    work.mkdir()
    for name in ("aaa-local-file", "bbb-local-file"):
        (work / name).write_text("")
    kubeconfig = _kubeconfig(tmp_path / "kc", ["*", "ctx-\\x1b]0;pwned\\x07", "prod"])
    books = tmp_path / "books"
    books.mkdir()
    (books / f"evil{ESCAPE}.yaml").write_text("name: x\nsteps: [{name: a, run: 'true'}]\n")
    (books / "disk-full.yaml").write_text("name: x\nsteps: [{name: a, run: 'true'}]\n")
    (tmp_path / "config.yaml").write_text(f"runbook_paths: ['{books}']\n")
    shell = InteractiveShell(["bash", "--norc", "--noprofile", "-i"], path_dir=bin_dir(tmp_path),
                             env={"KUBECONFIG": str(kubeconfig), "DEBUGKIT_CONFIG": str(tmp_path / "config.yaml"),
                                  "DOCKER_HOST": "tcp://127.0.0.1:1"})
    try:
        shell.run(f"cd {work}")
        shell.run('eval "$(debugkit completion bash)"')
        shown = shell.tab("debugkit attach --context ", presses=2)
        assert "prod" in shown and "\\*" in shown, shown  # the context named * is offered as the word *
        assert "local-file" not in shown, shown          # ... and not glob-expanded to the files here
        assert "pwned" not in shown and "\x1b" not in shown, repr(shown)  # (bash's own bell, \x07, may ring)
        shown = shell.tab("debugkit runbook run ", presses=2)
        assert "disk-full" in shown and "\x1b" not in shown, repr(shown)
    finally:
        shell.close()
