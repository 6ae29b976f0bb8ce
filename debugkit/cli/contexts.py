"""`--context a,b,c` and `--all-contexts` on attach, runbook run, ps and inspect: the
commands' thin adapters over session/contexts.py. attach and runbook run reuse the fleet's
runner and output (cli/fleet.py): every (context, target) is one outcome, named
`[CONTEXT] TARGET` in lines and with a `context` field in JSON; a context that cannot be
prepared (unreachable, forbidden, no such context) is one outcome with its reason."""
from __future__ import annotations

import click

from debugkit.cli.common import err


def all_contexts_option(func):
    return click.option("--all-contexts", is_flag=True,
                        help="Kubernetes: every context of the kubeconfig, in parallel (as --context a,b,c does; "
                             "each line and JSON record names its context).")(func)


def requested(kwargs: dict, all_contexts: bool):
    """The contexts asked for, or None (one context: today's path)."""
    from debugkit.session import contexts

    return contexts.requested(kwargs.get("kube_context"), all_contexts)


class Prepared:
    """Every context's runtime and members, ready for one fleet run."""

    def __init__(self, base, runtime_name: str, names, many, ref):
        from debugkit.runtimes.base import Member
        from debugkit.session import contexts, fleet, flow

        self.base = base
        self.runtimes: dict[str, object] = {}
        self.members: list = []
        self.outcomes: list = []
        self.failed: list = []        # outcomes of contexts that could not be prepared
        self.skipped: list = []
        self.cleanups: list = []
        names = contexts.resolve(names, base.connection, runtime_name)
        target = str(many if many is not None else ref)

        def prepare(context: str):
            runtime = contexts.runtime_for(runtime_name, base.connection, context)
            try:
                if many is None:
                    return runtime, [Member(ref=ref, label=str(ref), namespace=getattr(ref, "namespace", None))], []
                found, skipped = fleet.expand(many, runtime)
                fleet.require_members(many, found, skipped)
                return runtime, found, skipped
            except BaseException:
                runtime.close()
                raise

        for result in contexts.fan_out(names, prepare):
            if result.error is not None:
                outcome = fleet.Outcome(target, getattr(many or ref, "namespace", None), None, status="error",
                                        context=result.context,
                                        error={"message": str(result.error), "exit_code": int(result.error.exit_code)})
                self.failed.append(outcome)
                continue
            runtime, found, skipped = result.value
            self.runtimes[result.context] = runtime
            self.cleanups.append(fleet.Cleanup(runtime, record_created=flow.record_created))
            self.skipped += [(f"[{result.context}] {name}", why) for name, why in skipped]
            for member in found:
                self.members.append(member)
                self.outcomes.append(fleet.Outcome(member.label, member.namespace, member.container,
                                                   context=result.context))

    def flags_for(self, member, outcome, **changes):
        from debugkit.session import contexts

        # A pod's reference carries its namespace; a node's does not (it is where its pod goes).
        return self.base.evolve(target=str(member.ref), namespace=getattr(member.ref, "namespace", None),
                                container=None,
                                connection=contexts.connection_for(self.base.connection, outcome.context), **changes)

    def cancel(self) -> None:
        for cleanup in self.cleanups:
            cleanup.cancel()

    def forget(self) -> None:
        for cleanup in self.cleanups:
            cleanup.forget()

    def review(self, member, outcome) -> None:
        from debugkit.session import fleet

        fleet.explain_failure(self.runtimes[outcome.context], member, outcome)

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.close()


def prepare(target, many, names, kwargs, *, parallel: int) -> Prepared:
    """Refuse what is refused everywhere once, before any context is contacted; then every
    context's runtime and members, in parallel."""
    from debugkit import runtimes
    from debugkit.cli.common import sidecar_flags
    from debugkit.core.targets import parse_target
    from debugkit.session import contexts, flow

    base = sidecar_flags(str(many) if many is not None else target, **{**kwargs, "kube_context": None})
    ref = None
    with flow.refusals_audited(base):
        if many is None:
            ref = parse_target(target, runtimes.syntax(), namespace=base.namespace, container=base.container)
            flow.validate(base)  # bad flags: one line and 64, not one per context
        runtime_name = many.runtime if many is not None else ref.runtime
        contexts.check_runtime(runtime_name, "--context with several names" if names != contexts.ALL
                               else "--all-contexts")
        flow.check_flags(runtime_name, base)
        flow.check_reason(base)
        if many is not None:
            from debugkit.core.options import check_node_flags

            check_node_flags(many, base)
    prepared = Prepared(base, runtime_name, names, many, ref)
    for runtime in prepared.runtimes.values():
        runtime.concurrency = max(1, min(parallel, len(prepared.members)))
    return prepared


def attach_contexts(target, many, names, command, *, stdin, tty, output, parallel, fail_fast, **kwargs) -> int:
    from debugkit.cli.fleet import Display, attach_member
    from debugkit.core.errors import InvalidInput
    from debugkit.session import fleet
    from debugkit.session.signals import signals_as_exceptions

    if not command or tty:
        raise InvalidInput("an interactive shell needs one cluster: give one --context, or run a command on all of "
                           "them after --")
    if stdin:
        raise InvalidInput("-i cannot feed one stdin to several clusters")
    prepared = prepare(target, many, names, kwargs, parallel=parallel)
    count = len(prepared.runtimes) + len(prepared.failed)
    display = Display(output=output, what=f"attach {many or target} over {count} context(s)")
    runner = fleet.Fleet(prepared.members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed,
                         outcomes=prepared.outcomes)

    def work(member, outcome):
        flags = prepared.flags_for(member, outcome, command=command)
        attach_member(flags, prepared.runtimes[outcome.context], outcome, runner)

    everything = prepared.failed + runner.outcomes
    display.start(everything, prepared.skipped)
    for outcome in prepared.failed:
        display.changed(outcome)  # once, with its reason
    try:
        if prepared.members:
            with signals_as_exceptions():
                runner.run(work, cancel=prepared.cancel, done=prepared.forget, review=prepared.review)
    finally:
        display.finish(everything)
        prepared.close()
    return fleet.exit_status(everything)


def runbook_contexts(target, many, names, book, values, *, output, report_path, parallel, fail_fast, profile,
                     **kwargs) -> int:
    from debugkit.cli.fleet import Display, runbook_fleet_end, runbook_member
    from debugkit.session import fleet
    from debugkit.session.signals import signals_as_exceptions

    prepared = prepare(target, many, names, {**kwargs, "profile": profile}, parallel=parallel)
    display = Display(output="text" if output == "text" else "quiet",
                      what=f"runbook {book.source} over {len(prepared.runtimes) + len(prepared.failed)} context(s)")
    runner = fleet.Fleet(prepared.members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed,
                         outcomes=prepared.outcomes)
    def work(member, outcome):
        flags = prepared.flags_for(member, outcome)
        runbook_member(book, values, flags, prepared.runtimes[outcome.context], outcome, output=output)

    everything = prepared.failed + runner.outcomes
    display.start(everything, prepared.skipped)
    for outcome in prepared.failed:
        display.changed(outcome)
    interrupted = None
    try:
        if prepared.members:
            with signals_as_exceptions():
                runner.run(work, cancel=prepared.cancel, done=prepared.forget, review=prepared.review)
    except BaseException as exc:  # Ctrl-C/SIGTERM: report what finished, then exit 130/143
        interrupted = exc
    finally:
        display.finish(everything)
        prepared.close()
    entries = [{"context": o.context, "target": o.target, "namespace": o.namespace, "container": o.container,
                "status": o.status, "duration_s": o.duration_s, "error": o.error, "report": o.report}
               for o in everything]
    return runbook_fleet_end(book, entries, everything, output=output, report_path=report_path,
                             interrupted=interrupted)


def inspect_contexts(target, names, output, kwargs) -> int:
    """inspect in every context: one record each, named by its context (an error record for
    a context that failed, which is also said once on stderr)."""
    import json

    from debugkit import runtimes
    from debugkit.cli.common import render, sidecar_flags
    from debugkit.core.escape import safe
    from debugkit.core.targets import parse_target
    from debugkit.session import contexts, flow

    base = sidecar_flags(target, **{**kwargs, "kube_context": None})
    ref = parse_target(target, runtimes.syntax(), namespace=base.namespace, container=base.container)
    contexts.check_runtime(ref.runtime, "--context with several names" if names != contexts.ALL else "--all-contexts")
    names = contexts.resolve(names, base.connection, ref.runtime)
    results = contexts.fan_out(names, lambda context: flow.inspect(
        base.evolve(connection=contexts.connection_for(base.connection, context))))
    records = []
    for result in results:
        if result.error is not None:
            err(f"context {safe(result.context)}: {safe(str(result.error))}")
            records.append({"context": result.context, "error": str(result.error),
                            "exit_code": int(result.error.exit_code)})
        else:
            records.append({"context": result.context, **result.value})
    if output == "json":
        click.echo(json.dumps(records, indent=2))
    else:
        for index, record in enumerate(records):
            if index:
                click.echo("")
            if "error" in record:
                continue  # said on stderr
            click.echo(f"== context {safe(record['context'])}")
            render({k: v for k, v in record.items() if k != "context"}, output)
    return contexts.exit_status(results)

