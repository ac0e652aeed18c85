"""``imgstack url``: print a signed URL. Imports only click and the pure URL package."""

from __future__ import annotations

import datetime
import re
import time

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
@click.option("--preset", metavar="NAME",
              help="A named transformation from the presets file (IMGSTACK_PRESETS_FILE or config/presets.json).")
@click.option("--version", "version", metavar="TOKEN|auto",
              help="Cache-busting token, added as v(TOKEN); 'auto' reads the object's ETag from S3 "
                   "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).")
@click.option("--base", default="", metavar="URL", help="Prefix, e.g. https://img.example.com")
@click.option("--key", envvar="SECURITY_KEY", show_envvar=True,
              help="Signing key (prefer the environment: command lines are visible to other users).")
@click.option("--algorithm", type=click.Choice(["sha1", "sha256"]), default="sha1",
              envvar="IMGSTACK_SIGNATURE_ALGORITHM", show_envvar=True, show_default=True)
def command(image: str, size: tuple[int | None, int | None], fit_in: bool, smart: bool, filters: str,
            expires_in: int | None, expires_at: int | None, preset: str | None, version: str | None,
            base: str, key: str | None, algorithm: str) -> None:
    """Print a signed URL for BUCKET/KEY (decoded: spaces, '+' and unicode are escaped here)."""
    if not key:
        raise click.UsageError("no signing key: set SECURITY_KEY or pass --key")
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires or --expires-at, not both")
    if version == "auto":
        version = _version_from_s3(image)
    width, height = size
    options: dict = {"width": width, "height": height, "fit_in": fit_in, "smart": smart, "filters": filters}
    if preset is not None:
        if any((width, height, fit_in, smart, filters)):
            raise click.UsageError("--preset cannot be combined with --size/--fit-in/--smart/--filters")
        options = {"params": _preset(preset)}
    try:
        url = build_url(image, key=key, base=base, expires_in=expires_in, expires_at=expires_at,
                        version=version, algorithm=algorithm, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if expires_at is not None and expires_at <= time.time():
        # still printed (a test may want an expired link), but nobody should ship it by mistake
        when = datetime.datetime.fromtimestamp(expires_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"warning: --expires-at {expires_at} ({when}) is in the past: this link answers 410", err=True)
    click.echo(url)


def _preset(name: str):  # noqa: ANN202
    import os

    from thumbor_plugins import presets

    try:
        known = presets.load(os.environ.get("IMGSTACK_PRESETS_FILE") or None)
    except presets.PresetError as error:
        raise click.UsageError(str(error)) from None
    if name not in known:
        raise click.UsageError(f"unknown preset {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def _version_from_s3(image: str) -> str:
    """A short version token from the object's ETag: it changes whenever the content does."""
    from thumbor_plugins.s3 import S3Error, S3Settings
    from thumbor_plugins.s3.sync import client, translate

    bucket, _, key = image.partition("/")
    if not key:
        raise click.UsageError("--version auto needs BUCKET/KEY")
    try:
        head = client(S3Settings.from_env()).head_object(Bucket=bucket, Key=key)
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        reason = translate(error)
        if not isinstance(reason, S3Error):
            raise
        raise click.ClickException(f"cannot read the ETag of s3://{bucket}/{key}: {type(reason).__name__}: {reason}")
    return version_token(head["ETag"])


def version_token(etag: str) -> str:
    """12 characters of the ETag (hex MD5, or a multipart ETag's hex part)."""
    return "".join(ch for ch in etag if ch.isalnum())[:12]
