"""Shell completion against the real Docker engine (and Podman when it is set up): the real
CLI through click's completion protocol, real bash/zsh/fish, and engines that hang."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.helpers import FIXTURES, labels_for_test
from tests.integration.shells import InteractiveShell, SilentServer, bin_dir, complete

# The budget a TAB has (session/complete.py BUDGET is 1.5 s) plus the interpreter's start.
QUICK = 3.0


@pytest.fixture
def target(start_target):
    return start_target("named-user")


@pytest.fixture
def podman_target():
    """A running container on Podman, when Podman is set up here."""
    from debugkit import runtimes
    from debugkit.core.options import Connection

    if not runtimes.configured("podman", Connection()) or shutil.which("podman") is None:
        pytest.skip("Podman is not set up here")
    name = f"dk-test-podman-{uuid.uuid4().hex[:8]}"
    image = f"localhost/{FIXTURES['named-user']}"
    labels = [arg for k, v in labels_for_test().items() for arg in ("--label", f"{k}={v}")]
    run = subprocess.run(["podman", "run", "-d", "--name", name, *labels, image], capture_output=True, text=True,
                         timeout=120)
    if run.returncode != 0:
        pytest.skip(f"cannot start a Podman container: {run.stderr.strip()}")
    yield name
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, timeout=60)


def test_running_containers_complete_as_targets(target):
    prefix = target.name[:-3]
    values, elapsed, proc = complete(f"debugkit attach {prefix}")
    assert proc.returncode == 0 and proc.stderr == b""
    assert values == [target.name]
    assert elapsed < QUICK
    # Every command that takes a TARGET, and docker:// spelled out.
    for words in (f"debugkit inspect {prefix}", f"debugkit port-forward {prefix}",
                  f"debugkit runbook run dns {prefix}", f"debugkit doctor {prefix}"):
        assert complete(words)[0] == [target.name], words
    assert complete(f"debugkit attach docker://{prefix}")[0] == [f"docker://{target.name}"]


def test_stopped_containers_and_sidecars_are_not_offered(docker_client, target):
    prefix = target.name[:-3]
    target.stop(timeout=1)
    assert complete(f"debugkit attach {prefix}")[0] == []
    sidecar = docker_client.containers.run(FIXTURES["named-user"], name=f"{target.name}-sidecar", detach=True,
                                           labels={**labels_for_test(), "io.debugkit.managed": "true"})
    try:
        assert complete(f"debugkit attach {target.name}")[0] == []
    finally:
        sidecar.remove(force=True)


def test_podman_containers_complete_under_their_scheme(podman_target):
    values, elapsed, _ = complete("debugkit attach podman://dk-test-podman-")
    assert f"podman://{podman_target}" in values and elapsed < QUICK
    # With nothing typed, Docker names come bare and Podman's with the scheme.
    everything, _, _ = complete("debugkit attach ")
    assert f"podman://{podman_target}" in everything and podman_target not in everything


def test_podman_is_not_asked_when_it_is_not_set_up(target, monkeypatch):
    from debugkit.runtimes.docker import clients
    from debugkit.runtimes.podman import address
    from debugkit.session import complete as lookups

    dialed = []
    real_client = clients.short_client
    monkeypatch.setattr(address, "configured", lambda connection=None: False)
    monkeypatch.setattr(clients, "short_client",
                        lambda where, **kw: dialed.append(where.text) or real_client(where, **kw))
    assert lookups.targets("podman://") == []
    assert target.name in lookups.targets("")
    assert len(dialed) == 1 and "podman" not in dialed[0]  # Docker's engine, and only it


def test_runbooks_profiles_and_commands():
    assert complete("debugkit runbook run ")[0] == ["dns", "http-health", "node", "processes", "sockets", "tls"]
    assert complete("debugkit runbook validate h")[0] == ["http-health"]
    assert complete("debugkit attach --profile p")[0] == ["ptrace"]
    assert complete("debugkit inspect --profile ")[0] == ["restricted", "netadmin", "ptrace", "node", "sysadmin"]
    assert complete("debugkit comp")[0] == ["completion"]
    assert complete("debugkit completion ")[0] == ["bash", "zsh", "fish"]
    # Paths are the shell's to complete: cp's endpoints, --custom, --kubeconfig.
    for words in ("debugkit cp ./x", "debugkit cp web:/etc/passwd ./", "debugkit attach --custom c",
                  "debugkit attach --kubeconfig ~/.k"):
        _, _, proc = complete(words)
        assert proc.stdout.decode().startswith("file,"), words


def test_configured_runbook_paths_are_offered(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "team-checks.yaml").write_text("name: team\nsteps: [{name: a, run: 'true'}]\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"runbook_paths: [{books}]\n")
    assert "team-checks" in complete("debugkit runbook run t", env={"DEBUGKIT_CONFIG": str(config)})[0]
    # --config typed on the command line counts too (the group's callback does not run).
    assert complete(f"debugkit --config {config} runbook run team")[0] == ["team-checks"]
    # A path completes as a file: the shell does it.
    _, _, proc = complete("debugkit runbook run ./")
    assert proc.stdout.decode().strip() == "file,./"


def test_a_broken_config_file_still_completes_bundled_runbooks(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("runbook_paths: [\n")
    values, _, proc = complete("debugkit runbook run d", env={"DEBUGKIT_CONFIG": str(config)})
    assert values == ["dns"] and proc.stderr == b""


def test_a_dead_engine_completes_nothing_at_once():
    values, elapsed, proc = complete("debugkit attach ", env={"DOCKER_HOST": "tcp://127.0.0.1:1",
                                                              "CONTAINER_HOST": "tcp://127.0.0.1:1"})
    assert (values, proc.returncode, proc.stdout.strip(), proc.stderr) == ([], 0, b"", b"")
    assert elapsed < QUICK


def test_an_engine_that_hangs_completes_nothing_within_the_budget(tmp_path):
    with SilentServer() as tcp, SilentServer(str(tmp_path / "engine.sock")) as unix:
        for host in (f"tcp://{tcp.address}", unix.address):
            values, elapsed, proc = complete("debugkit attach ", env={"DOCKER_HOST": host,
                                                                      "CONTAINER_HOST": host})
            assert (values, proc.stdout.strip(), proc.stderr) == ([], b"", b""), host
            assert elapsed < QUICK, f"{host}: {elapsed:.2f}s"
        assert tcp.accepted and unix.accepted  # it really asked, and gave up


def test_an_unusable_docker_host_completes_nothing():
    values, _, proc = complete("debugkit attach ", env={"DOCKER_HOST": "bogus://x", "CONTAINER_HOST": "bogus://y"})
    assert (values, proc.stdout.strip(), proc.stderr) == ([], b"", b"")


def test_the_scripts_print_for_each_shell():
    from tests.helpers import run_cli

    for shell, marker in (("bash", "complete -o nosort -F _debugkit_completion debugkit"),
                          ("zsh", "#compdef debugkit"), ("fish", "complete --no-files --command debugkit")):
        result = run_cli("completion", shell)
        assert result.returncode == 0 and marker in result.stdout.decode(), shell
    bad = run_cli("completion", "tcsh")
    assert bad.returncode == 2 and b"tcsh" in bad.stderr


def test_bash_completes_through_the_script(target, tmp_path):
    """Real bash, readline and TAB: the installed line from docs/completion.md."""
    shell = InteractiveShell(["bash", "--norc", "--noprofile", "-i"], path_dir=bin_dir(tmp_path))
    try:
        shell.run('eval "$(debugkit completion bash)"')
        assert f"debugkit attach {target.name} " in shell.tab(f"debugkit attach {target.name[:-3]}")
        # `docker://` has a colon, one of bash's word breaks: the script keeps the word whole.
        assert f"docker://{target.name} " in shell.tab(f"debugkit attach docker://{target.name[:-3]}")
        assert "http-health " in shell.tab("debugkit runbook run ht")
    finally:
        shell.close()


def test_bash_completes_podman_names(podman_target, tmp_path):
    shell = InteractiveShell(["bash", "--norc", "--noprofile", "-i"], path_dir=bin_dir(tmp_path))
    try:
        shell.run('eval "$(debugkit completion bash)"')
        assert f"podman://{podman_target} " in shell.tab(f"debugkit attach podman://{podman_target[:-3]}")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_through_the_script(target, tmp_path):
    shell = InteractiveShell(["zsh", "-f", "-i"], path_dir=bin_dir(tmp_path))
    try:
        shell.run("autoload -Uz compinit && compinit -u")
        shell.run('eval "$(debugkit completion zsh)"')
        assert f"debugkit attach {target.name} " in shell.tab(f"debugkit attach {target.name[:-3]}")
        assert "http-health " in shell.tab("debugkit runbook run ht")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_through_the_script(target, tmp_path):
    """fish's own completion engine (complete -C) over the sourced script."""
    path = bin_dir(tmp_path)
    script = (f"set -gx PATH {path} $PATH; debugkit completion fish | source; "
              f"complete -C 'debugkit attach {target.name[:-3]}'; complete -C 'debugkit runbook run ht'")
    out = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [target.name, "http-health"]


# The file-based installs docs/completion.md gives, each in a fresh HOME.

def _script(tmp_path, shell: str) -> str:
    from tests.helpers import run_cli

    result = run_cli("completion", shell)
    assert result.returncode == 0
    return result.stdout.decode()


@pytest.mark.skipif(not os.path.exists("/usr/share/bash-completion/bash_completion"),
                    reason="bash-completion is not installed")
def test_bash_completion_user_directory(target, tmp_path):
    home = tmp_path / "home"
    completions = home / ".local" / "share" / "bash-completion" / "completions"
    completions.mkdir(parents=True)
    (completions / "debugkit").write_text(_script(tmp_path, "bash"))
    shell = InteractiveShell(["bash", "--norc", "--noprofile", "-i"], path_dir=bin_dir(tmp_path),
                             env={"HOME": str(home), "XDG_DATA_HOME": ""})
    try:
        shell.run(". /usr/share/bash-completion/bash_completion")
        assert f"debugkit attach {target.name} " in shell.tab(f"debugkit attach {target.name[:-3]}")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_fpath_file(target, tmp_path):
    home = tmp_path / "home"
    (home / ".zfunc").mkdir(parents=True)
    (home / ".zfunc" / "_debugkit").write_text(_script(tmp_path, "zsh"))
    shell = InteractiveShell(["zsh", "-f", "-i"], path_dir=bin_dir(tmp_path), env={"HOME": str(home)})
    try:
        shell.run("fpath=(~/.zfunc $fpath)")
        shell.run("autoload -Uz compinit && compinit -u")
        assert f"debugkit attach {target.name} " in shell.tab(f"debugkit attach {target.name[:-3]}")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completions_directory(target, tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "fish" / "completions").mkdir(parents=True)
    (home / ".config" / "fish" / "completions" / "debugkit.fish").write_text(_script(tmp_path, "fish"))
    out = subprocess.run(["fish", "-c", f"set -gx PATH {bin_dir(tmp_path)} $PATH; "
                                        f"complete -C 'debugkit attach {target.name[:-3]}'"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": ""})
    assert out.stdout.split() == [target.name], out.stderr
