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
def build(
    tag: str | None,
    base_image: str | None,
    variant: str,
    no_cache: bool,
    cache_from: tuple[str, ...],
    if_changed: bool,
    quiet: bool,
) -> None:
    """Build the toolbox image and tag it as the reference `attach` uses."""
    from debugkit.session.defaults import toolbox_image
    from debugkit.toolbox.build import build_toolbox

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    if tag is None and variant == "full":
        tag = toolbox_image()  # $DEBUGKIT_IMAGE, or the standard tag
    ref = build_toolbox(
        tag=tag,
        base_image=base_image,
        variant=variant,  # type: ignore[arg-type]  # click.Choice guarantees a Variant
        progress=progress,
        cache_from=cache_from,
        no_cache=no_cache,
        if_changed=if_changed,
    )
    click.echo(ref)


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
