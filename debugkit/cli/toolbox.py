"""`debugkit toolbox build|ref`: click wiring over debugkit.toolbox.

Progress goes to stderr, the resulting image reference to stdout, so
`IMG=$(debugkit toolbox build)` works. `python -m debugkit.cli.toolbox ...` (used by
scripts/build-toolbox before debugkit is installed) maps errors to exit codes itself.
"""
from __future__ import annotations

import sys

import click

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
