"""`debugkit toolbox build|ref`: click wiring over debugkit.toolbox.

Progress goes to stderr, the resulting image reference to stdout, so
`IMG=$(debugkit toolbox build)` works. `python -m debugkit.cli.toolbox ...` (used by
scripts/build-toolbox before debugkit is installed) maps errors to exit codes itself.
"""
from __future__ import annotations

import sys

import click

from debugkit.cli.common import engine_options
from debugkit.core.imageref import VARIANTS


@click.group("toolbox")
def toolbox() -> None:
    """Build or locate the bundled toolbox image (the default sidecar image)."""


@toolbox.command("build")
@click.option("--tag", metavar="REF", help="Tag the image REF instead of the default reference.")
@click.option(
    "--base-image",
    metavar="REF",
    help="Debian bookworm image to build FROM (default: the digest pinned in the "
    "Dockerfile; a local debian:bookworm-slim when that cannot be pulled).",
)
@click.option(
    "--variant",
    type=click.Choice(VARIANTS),
    default="full",
    show_default=True,
    help="full: the debug tools; slim: static busybox + static curl.",
)
@click.option("--no-cache", is_flag=True, help="Do not reuse cached layers.")
@click.option(
    "--cache-from",
    metavar="REF",
    multiple=True,
    help="Image whose layers may be reused (repeatable), e.g. after docker load in CI.",
)
@click.option(
    "--if-changed",
    is_flag=True,
    help="Skip the build when the image (or a --cache-from image) was built from the same inputs.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the resulting reference.")
@click.option("-v", "--verbose", is_flag=True, help="Show the whole build output instead of a progress line.")
@click.option("--log", "log_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the build log here (default: $XDG_STATE_HOME/debugkit/toolbox-build-VARIANT.log).")
@engine_options
def build(
    tag: str | None,
    base_image: str | None,
    variant: str,
    no_cache: bool,
    cache_from: tuple[str, ...],
    if_changed: bool,
    quiet: bool,
    verbose: bool,
    log_file: str | None,
    docker_host: str | None,
    docker_context: str | None,
) -> None:
    """Build the toolbox image and tag it as the reference `attach` uses.

    On a terminal, one line shows the stage, the step and the time spent; elsewhere a line
    per stage. The full build log goes to a file, named at the end (or to stderr with
    --verbose); when the build fails, its last lines are shown.
    """
    from pathlib import Path

    from debugkit.core.errors import DebugkitError
    from debugkit.toolbox.build import build_toolbox, toolbox_context_dir
    from debugkit.toolbox.progress import BuildReport, dockerfile_stages

    if tag is None:
        tag = local_toolbox_ref(variant)
    try:
        stages = dockerfile_stages((toolbox_context_dir() / "Dockerfile").read_text(encoding="utf-8"), variant)
    except (OSError, DebugkitError):
        stages = ()
    report = BuildReport(variant=variant, stages=stages, log_path=Path(log_file) if log_file else None,
                         quiet=quiet, verbose=verbose)
    try:
        ref = build_toolbox(
            tag=tag,
            base_image=base_image,
            variant=variant,  # type: ignore[arg-type]  # click.Choice guarantees a Variant
            progress=report.line,
            cache_from=cache_from,
            no_cache=no_cache,
            if_changed=if_changed,
            docker_host=docker_host,
            docker_context=docker_context,
        )
    except DebugkitError as exc:
        exc.hint = report.failed() or exc.hint
        raise
    except BaseException:
        report.failed()
        raise
    report.finished()
    click.echo(ref)


def local_toolbox_ref(variant: str) -> str:
    """The local tag `toolbox build` gives a variant, and `toolbox push` pushes from: for
    full, $DEBUGKIT_IMAGE or the config file's image when that is a tag (a digest-pinned
    reference, as `toolbox push --set-default` writes, cannot be a build's tag), else
    the standard `debugkit/toolbox:<version>[-slim]`."""
    import os

    from debugkit.core.imageref import toolbox_ref
    from debugkit.session import config
    from debugkit.session.defaults import toolbox_image

    if variant != "full":
        return toolbox_ref(variant)
    if not os.environ.get("DEBUGKIT_IMAGE") and not config.active_path().exists():
        return toolbox_ref("full")  # (a --config file that does not exist yet: --set-default creates it)
    configured = toolbox_image()
    return toolbox_ref("full") if "@" in configured else configured


@toolbox.command("push")
@click.argument("destination", metavar="REPO[:TAG]")
@click.option(
    "--variant",
    type=click.Choice(("full", "slim", "all")),
    default=None,
    help="What to push (default: every variant that is built). slim goes to REPO:TAG-slim.",
)
@click.option(
    "--set-default",
    is_flag=True,
    help="Write the full variant's digest-pinned reference into the config file as the image "
    "attach uses (the global image:, or with --context that kube context's).",
)
@click.option("--context", "kube_context", metavar="NAME",
              help="With --set-default: set the image of this kube context only.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the pinned references (and warnings).")
@engine_options
def push(destination: str, variant: str | None, set_default: bool, kube_context: str | None, quiet: bool,
         docker_host: str | None, docker_context: str | None) -> None:
    """Push the built toolbox to a registry a cluster can pull from.

    REPO[:TAG] names the repository, registry included (registry.example.com/team/toolbox);
    TAG defaults to debugkit's version. The full variant goes to REPO:TAG, the slim one to
    REPO:TAG-slim. The engine attach uses pushes, with the credentials the docker CLI would
    send (docker login, credential helpers). Prints the digest-pinned reference of each,
    REPO@sha256:..., full first.
    """
    from debugkit.toolbox import push as pushing

    pushing.parse_destination(destination)  # a bad reference is refused before anything else
    if kube_context is not None and (not kube_context.strip() or not kube_context.isprintable()):
        raise click.UsageError(f"--context {kube_context!r} is not a kube context name")
    if kube_context is not None and not set_default:
        raise click.UsageError("--context names the kube context whose image --set-default sets: add --set-default")
    if set_default and variant == "slim":
        raise click.UsageError("--set-default writes the full variant's reference: use --variant full or all")
    from debugkit.toolbox.build import connect_engine

    engine = connect_engine(docker_host=docker_host, docker_context=docker_context)
    try:
        _push(engine, destination, variant, set_default, kube_context, quiet)
    finally:
        engine.close()


def _push(engine, destination: str, variant: str | None, set_default: bool, kube_context: str | None,
          quiet: bool) -> None:
    from debugkit.core.errors import ImageMissing
    from debugkit.toolbox import push as pushing

    wanted = ("full", "slim") if variant in (None, "all") else (variant,)
    sources = {v: local_toolbox_ref(v) for v in wanted}
    if variant is None:  # every variant that is built; at least one must be
        built = {v: ref for v, ref in sources.items() if pushing.local_image_id(engine, ref) is not None}
        if not built:
            raise ImageMissing(f"no toolbox image is built in the local Docker engine ({', '.join(sources.values())})",
                               hint="build it first with: debugkit toolbox build")
        sources = built
    if set_default and "full" not in sources:
        raise pushing.missing_variant_error("full", local_toolbox_ref("full"))
    targets = pushing.destinations(destination, sources)
    config_file = _config_to_edit() if set_default else None
    view = _PushView(quiet=quiet)
    try:
        results = pushing.push_toolbox(targets, engine=engine, progress=view.progress)
    finally:
        view.close()
    for result in results:
        click.echo(result.pinned)
    if set_default:
        from debugkit.session import config_edit

        edit = config_edit.set_image(results[0].pinned, path=config_file, context=kube_context)
        if not quiet or edit.how == "rewritten":
            click.echo(f"debugkit: {edit.describe()}", err=True)
        for note in _shadowing(kube_context):
            click.echo(f"debugkit: note: {note}", err=True)


def _config_to_edit():
    """The config file --set-default writes, checked before anything is pushed."""
    from debugkit.session import config

    path = config.active_path()
    config.load(path)  # an unreadable or invalid file stops us here, not after the push
    return path


def _shadowing(kube_context: str | None) -> list[str]:
    """What still overrides the value just written."""
    import os

    from debugkit.session import config

    cfg = config.load(config.active_path())  # as just written (current() may hold the old one)
    notes = []
    if os.environ.get("DEBUGKIT_IMAGE"):
        notes.append("DEBUGKIT_IMAGE is set in the environment, and it comes before the file")
    if kube_context is None:
        from debugkit import runtimes

        for name in runtimes.with_contexts():  # the runtimes that pull the toolbox from a registry
            if "image" in cfg.runtimes.get(name, {}):
                notes.append(f"runtimes.{name}.image in the file still names the image for "
                             f"{runtimes.entry(name).title}")
        own = sorted(name for name, entry in cfg.contexts.items() if "image" in entry)
        if own:
            notes.append(f"these kube contexts keep their own image: {', '.join(own)}")
    return notes


class _PushView:
    """Push progress: one rewritten line on a terminal, a line per image pushed elsewhere."""

    def __init__(self, *, quiet: bool):
        from debugkit.core.statusline import StatusLine

        self.quiet = quiet
        self.status = StatusLine(live=False if quiet else None)

    def progress(self, kind: str, data: dict) -> None:
        if kind == "layer":
            layers = data["layers"].values()
            done = sum(1 for s in layers if s.get("status") in ("Pushed", "Layer already exists")
                       or s.get("status", "").startswith("Mounted"))
            sent = sum(s.get("current", 0) for s in layers if s.get("total"))
            total = sum(s.get("total", 0) for s in layers)
            size = f", {sent / 1e6:.1f}/{total / 1e6:.1f} MB" if total else ""
            self.status.update(f"pushing {data['destination'].ref}: {done}/{len(layers)} layers{size}")
        elif kind == "start":
            self.status.update(f"pushing {data['destination'].ref}")
        elif kind == "pushed" and not self.quiet:
            done = data["pushed"]
            sent = f"{done.uploaded} layer{'' if done.uploaded == 1 else 's'} sent"
            self.status.print(f"debugkit: pushed {done.destination.source} as {done.destination.ref} "
                              f"({done.digest[:19]}) in {done.seconds:.1f} s: {sent}, {done.present} already there")

    def close(self) -> None:
        self.status.close()


@toolbox.command("ref")
@click.option("--variant", type=click.Choice(VARIANTS), default="full", show_default=True)
def ref(variant: str) -> None:
    """Print the toolbox image reference `attach` uses by default."""
    from debugkit.core.imageref import toolbox_ref
    from debugkit.session.defaults import toolbox_image

    click.echo(toolbox_image() if variant == "full" else toolbox_ref(variant))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point that maps debugkit errors to exit codes."""
    from debugkit.core.errors import DebugkitError

    try:
        toolbox.main(args=argv, prog_name="debugkit toolbox", standalone_mode=False)
    except DebugkitError as exc:
        click.echo(f"debugkit: error: {exc}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("debugkit: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
