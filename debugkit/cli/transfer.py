"""`debugkit cp` and `debugkit port-forward`: evidence out, ports in, through the sidecar."""
from __future__ import annotations

import sys

import click

from debugkit.cli.common import (complete_file, complete_target, err, reason_option, sidecar_flags, sidecar_options,
                                 target_options)


@click.command("cp")
@click.argument("src", shell_complete=complete_file)
@click.argument("dst", shell_complete=complete_file)
@click.option("--from-sidecar", is_flag=True,
              help="Read the sidecar's own filesystem (e.g. /tmp/capture.pcap) instead of the target's.")
@click.option("--write", is_flag=True, help="Allow copying INTO the target (as the target's user, no more).")
@click.option("--force", is_flag=True, help="Replace an existing destination.")
@click.option("--checksum", is_flag=True, help="Print the SHA-256 of every file copied.")
@target_options
@sidecar_options
@reason_option
def cp(src, dst, from_sidecar, write, force, checksum, **kwargs):
    """Copy between TARGET:PATH and a local path, as the target's own user.

    \b
    debugkit cp web:/etc/app/config.yaml ./config.yaml
    debugkit cp pod/api:/tmp/heap.pprof . -n shop
    debugkit cp --from-sidecar web:/tmp/capture.pcap .
    debugkit cp --write ./fix.json web:/tmp/fix.json

    Nothing is needed in the target. Symlinks are copied as links, never followed out
    of the target's root; an interrupted copy leaves nothing half-written.
    """
    from debugkit.core.errors import InvalidInput
    from debugkit.core.escape import safe
    from debugkit.session import copy, copylocal, flow, relaysock
    from debugkit.session.signals import signals_as_exceptions

    source, dest = copy.endpoints(src, dst)
    inbound = dest.target is not None
    remote = dest if inbound else source
    flags = sidecar_flags(remote.target, **kwargs)
    with flow.refusals_audited(flags):
        if inbound and not write:
            raise InvalidInput("cp into a target changes its files: pass --write to allow it")
        if inbound and from_sidecar:
            raise InvalidInput("--from-sidecar reads from the sidecar; it cannot be a destination")
        # The local side first: a destination that exists, a missing directory, a FIFO or a
        # device costs no sidecar.
        if inbound:
            sending = copylocal.plan_in(source.path)
        else:
            out = copylocal.plan_out(source.path, dest.path, force=force)
    record = {"cp": {"direction": "in" if inbound else "out", "remote_path": remote.path,
                     "local_path": (source if inbound else dest).path, "from_sidecar": from_sidecar}}
    with signals_as_exceptions():
        with flow.exec_session(flags, mode="cp", record=record, lazy=True) as opened:
            if not opened.plan.helper:
                raise InvalidInput("cp needs debugkit-helper in the sidecar image: use the toolbox (drop --image)")
            # On a local engine the archive comes through a socket in a directory of ours
            # that the sidecar mounts, not the exec stream (session/copysock.py).
            session = (opened.start_relay() if relaysock.wanted() else None) or opened.start()
            progress = copy.is_terminal()
            if inbound:
                done = copy.copy_in(session, sending, dest.path, force=force, progress=progress,
                                    checksum=checksum, relay=opened.relay_dir)
            else:
                done = copy.copy_out(session, out, from_sidecar=from_sidecar, progress=progress,
                                     checksum=checksum, relay=opened.relay_dir)
    for warning in done.warnings:
        err(f"warning: {warning}")
    if checksum:
        for digest, name in done.files:
            click.echo(f"{digest}  {safe(name)}")
    err(f"copied {done.count} file(s), {done.bytes} bytes, to {safe(done.path)}")


@click.command("port-forward")
@click.argument("target", shell_complete=complete_target)
@click.argument("ports", nargs=-1, required=True, metavar="[LOCAL:]REMOTE...")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Local IP address (or localhost) to listen on; another than loopback is warned about.")
@click.option("--via", type=click.Choice(["auto", "sidecar", "portforward"]), default="auto", show_default=True,
              help="Kubernetes: the pod's portforward subresource (auto: when RBAC allows it) or the sidecar.")
@target_options
@sidecar_options
@reason_option
def port_forward(target, ports, address, via, **kwargs):
    """Forward local ports to ports on TARGET's localhost (even ones bound to 127.0.0.1 only).

    \b
    debugkit port-forward web 6060            # pprof on the target's 127.0.0.1:6060
    debugkit port-forward pod/api 9000:8080 -n shop

    Ends with Ctrl-C (130) or SIGTERM (143), or when the target stops (67); the sidecar
    is removed either way (a Kubernetes debug container ends after --keep-alive). A local
    port already taken is 85, nothing listening on a remote port 86.
    """
    from debugkit.core.errors import Forbidden, InvalidInput
    from debugkit.session import flow
    from debugkit.session.forward import Forwarder, check_address, parse_mappings
    from debugkit.session import relaysock
    from debugkit.session.relaymux import MuxRelay
    from debugkit.session.signals import signals_as_exceptions

    mappings = parse_mappings(ports)
    exposed = check_address(address)
    flags = sidecar_flags(target, **kwargs)
    if via == "portforward":
        from debugkit import runtimes
        from debugkit.core.targets import parse_target

        entry = runtimes.entry(parse_target(target, runtimes.syntax()).runtime)
        if not entry.direct_forward:
            raise InvalidInput(f"--via portforward forwards without a sidecar, which {entry.title} targets cannot: "
                               f"use --via sidecar")
    with signals_as_exceptions():
        forwarder = Forwarder(None, mappings, address=address, log=lambda m: err(m))
        try:
            with flow.exec_session(flags, mode="port-forward", record={"ports": list(ports), "address": address},
                                   lazy=True) as opened:
                # The local ports first: one that is taken is an error before any sidecar starts.
                bound = forwarder.bind()

                def through_sidecar():
                    # On a local engine, through unix sockets in a directory of ours that the
                    # sidecar mounts (kernel speed); otherwise, or when the engine turns out
                    # not to see that directory, over one exec (the same sidecar).
                    session = opened.start_relay() if relaysock.wanted() else None
                    if session is not None:
                        forwarder.relay = relaysock.SocketRelay.start(
                            session, opened.relay_dir, sorted({m.remote for m in mappings}),
                            selector=forwarder.selector, log=lambda m: err(m))
                        if forwarder.relay is not None:
                            return forwarder.relay
                    session = session or opened.start()
                    if not session.plan.helper:
                        raise InvalidInput("port-forward through the sidecar needs debugkit-helper in its image: "
                                           "use the toolbox (drop --image)")
                    forwarder.relay = MuxRelay(session, selector=forwarder.selector, log=lambda m: err(m))
                    return forwarder.relay

                relay = opened.direct_forward() if via in ("auto", "portforward") else None
                if relay is None and via == "portforward":
                    raise InvalidInput("the pod's portforward subresource is not allowed here (RBAC): use "
                                       "--via sidecar")
                try:
                    relay = relay or through_sidecar()
                    for mapping in mappings:
                        relay.check(mapping.remote)
                except Forbidden:
                    # RBAC said `get pods/portforward`, the API server wanted more (a cluster
                    # that also asks `create` for websocket upgrades): the sidecar then.
                    if via != "auto" or isinstance(relay, (MuxRelay, relaysock.SocketRelay)):
                        raise
                    relay = through_sidecar()
                    for mapping in mappings:
                        relay.check(mapping.remote)
                forwarder.relay = relay
                if exposed:
                    err(f"warning: {exposed}")
                for addr, local, remote in bound:
                    click.echo(f"Forwarding from {addr}:{local} -> {remote} (via {relay.via})")
                sys.stdout.flush()
                try:
                    forwarder.serve_forever()
                finally:
                    forwarder.close()  # the connections and the relay's exec first, then the sidecar
        finally:
            forwarder.close()
