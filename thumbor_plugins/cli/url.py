"""``imgstack url``: print a signed URL. Imports only click and the pure URL package."""

from __future__ import annotations

import re

import click

from thumbor_plugins.urls import build_url

_SIZE = re.compile(r"(?P<width>[0-9]+)?x(?P<height>[0-9]+)?", re.ASCII)


def _parse_size(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None, None
    match = _SIZE.fullmatch(value)
    if not match or not (match["width"] or match["height"]):
        raise click.BadParameter(f"expected WxH, Wx or xH (e.g. 300x200), got {value!r}")
    return tuple(None if v is None else int(v) for v in (match["width"], match["height"]))


@click.command("url")
@click.argument("image", metavar="BUCKET/KEY")
@click.option("--size", callback=_parse_size, metavar="WxH",
              help="Target size, e.g. 300x200, 300x or x200.")
@click.option("--fit-in", is_flag=True, help="Fit inside WxH instead of cropping to it.")
@click.option("--smart", is_flag=True, help="Smart (face/feature) crop.")
@click.option("--filters", default="", metavar="F1(..):F2(..)", help='e.g. "format(webp):quality(80)".')
@click.option("--expires", "expires_in", type=click.IntRange(min=1), metavar="SECONDS",
              help="Link lifetime in seconds from now.")
@click.option("--expires-at", type=click.IntRange(min=0), metavar="UNIX_TS",
              help="Link expiry as unix seconds.")
# --preset NAME: reserved, added with the presets work.
# --version auto: reserved, added with the presets work; only a literal token is accepted today.
@click.option("--version", "version", metavar="TOKEN", help="Cache-busting token, added as v(TOKEN).")
@click.option("--base", default="", metavar="URL", help="Prefix, e.g. https://img.example.com")
@click.option("--key", envvar="SECURITY_KEY", show_envvar=True,
              help="Signing key (prefer the environment: command lines are visible to other users).")
@click.option("--algorithm", type=click.Choice(["sha1", "sha256"]), default="sha1",
              envvar="IMGSTACK_SIGNATURE_ALGORITHM", show_envvar=True, show_default=True)
def command(image: str, size: tuple[int | None, int | None], fit_in: bool, smart: bool, filters: str,
            expires_in: int | None, expires_at: int | None, version: str | None, base: str,
            key: str | None, algorithm: str) -> None:
    """Print a signed URL for BUCKET/KEY (decoded: spaces, '+' and unicode are escaped here)."""
    if not key:
        raise click.UsageError("no signing key: set SECURITY_KEY or pass --key")
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires or --expires-at, not both")
    if version == "auto":
        raise click.UsageError("--version auto is not available yet; give a literal token")
    width, height = size
    try:
        url = build_url(image, key=key, base=base, width=width, height=height, fit_in=fit_in,
                        smart=smart, filters=filters, expires_in=expires_in, expires_at=expires_at,
                        version=version, algorithm=algorithm)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(url)
