"""The kubectl plugin's argument handling: flags hoisted to the subcommand, bare targets."""
from __future__ import annotations

import click
import pytest

from debugkit.cli import cli
from debugkit.cli.plugin import PluginUsage, _endpoint_default, _wrap, hoist, pod_default


@pytest.mark.parametrize("argv, expected", [
    (["-n", "shop", "--context", "c", "attach", "web", "--", "ls", "-n", "1"],
     ["attach", "--namespace=shop", "--context=c", "web", "--", "ls", "-n", "1"]),
    (["-nshop", "attach", "web"], ["attach", "--namespace=shop", "web"]),
    (["-n=shop", "attach", "web"], ["attach", "--namespace=shop", "web"]),
    (["--namespace=shop", "--kubeconfig", "/k", "inspect", "web"],
     ["inspect", "--namespace=shop", "--kubeconfig=/k", "web"]),
    # a group's subcommand takes them, wherever they were written before it
    (["-n", "shop", "runbook", "run", "dns", "web"], ["runbook", "run", "--namespace=shop", "dns", "web"]),
    # kubectl's impersonation flags, as kubectl users write them
    (["--as", "bob", "--as-group=devs", "--as-group", "ops", "--as-uid", "7", "attach", "web"],
     ["attach", "--as=bob", "--as-group=devs", "--as-group=ops", "--as-uid=7", "web"]),
    (["runbook", "-n", "shop", "run", "dns", "web"], ["runbook", "run", "--namespace=shop", "dns", "web"]),
    # the root's own options stay in front, with their values
    (["--debug", "--config", "f.yaml", "-n", "s", "doctor"], ["--debug", "--config", "f.yaml", "doctor",
                                                               "--namespace=s"]),
    (["--config=f.yaml", "--context", "c", "config", "view"], ["--config=f.yaml", "config", "view", "--context=c"]),
    # nothing to hoist, or nothing after them: unchanged / dropped with no subcommand
    (["attach", "web", "-n", "shop"], ["attach", "web", "-n", "shop"]),
    (["-n", "shop", "--help"], ["--help"]),
    (["-n", "shop", "no-such-command"], ["-n", "shop", "no-such-command"]),
    ([], []),
])
def test_hoisting(argv, expected):
    assert hoist(argv, cli) == expected


@pytest.mark.parametrize("argv, message", [
    (["-n", "shop", "toolbox", "build"], "-n does not apply to `kubectl debugkit toolbox build`"),
    (["--kubeconfig", "k", "config", "view"], "--kubeconfig does not apply to `kubectl debugkit config view`"),
    (["--context"], "option --context requires an argument"),
    (["-n"], "option -n requires an argument"),
])
def test_refusals(argv, message):
    with pytest.raises(PluginUsage) as caught:
        hoist(argv, cli)
    assert caught.value.format_message() == message


def test_hoisting_leaves_the_help_option_names_alone():
    hoist(["-n", "x", "attach", "web"], cli)
    assert cli.get_help_option(click.Context(cli, help_option_names=["-h", "--help"])).opts == ["-h", "--help"]


@pytest.mark.parametrize("ref, expected", [
    ("web", "pod/web"), ("pod/web", "pod/web"), ("deploy/api", "deploy/api"), ("k8s://ns/web", "k8s://ns/web"),
    ("docker://web", "docker://web"), ("podman://web", "podman://web"), ("compose/shop", "compose/shop"),
    (None, None), ("", ""),
])
def test_a_bare_target_is_a_pod(ref, expected):
    assert pod_default(ref) == expected


@pytest.mark.parametrize("text, expected", [
    ("web:/etc/x", "pod/web:/etc/x"), ("pod/web:/etc/x", "pod/web:/etc/x"), ("k8s://ns/web:/x", "k8s://ns/web:/x"),
    ("docker://web:/x", "docker://web:/x"), ("./local", "./local"), ("/abs/a:b", "/abs/a:b"), ("plain", "plain"),
])
def test_cp_endpoints(text, expected):
    assert _endpoint_default(text) == expected


def _command(*params):
    seen = {}

    @click.command()
    def command(**kwargs):
        seen.update(kwargs)
    command.params = list(params)
    return command, seen


def test_wrapping_maps_the_target_but_not_with_a_selector():
    command, seen = _command(click.Argument(["target"], required=False), click.Option(["-l", "--selector"]))
    _wrap(command)
    command.main(["web"], standalone_mode=False)
    assert seen["target"] == "pod/web"
    command.main(["ss", "-l", "app=x"], standalone_mode=False)  # attach: that word is the command
    assert seen["target"] == "ss"


def test_wrapping_maps_cp_endpoints():
    command, seen = _command(click.Argument(["src"]), click.Argument(["dst"]))
    _wrap(command)
    command.main(["web:/tmp/x", "./x"], standalone_mode=False)
    assert (seen["src"], seen["dst"]) == ("pod/web:/tmp/x", "./x")
