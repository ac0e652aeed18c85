"""``imgstack url``: print a signed URL. Imports only click and the pure URL package (S3 only
for ``--version auto``)."""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

import click

from thumbor_plugins.urls import build_url

from .exits import CliError, Exit
from .options import JsonCommand, emit, json_option, profile_option, require_key, signing_options

_SIZE = re.compile(r"(?P<width>[0-9]+)?x(?P<height>[0-9]+)?", re.ASCII)


def _parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    match = _SIZE.fullmatch(value)
    if not match or not (match["width"] or match["height"]):
        raise click.BadParameter(f"expected WxH, Wx or xH (e.g. 300x200), got {value!r}")
    return (None if match["width"] is None else int(match["width"]),
            None if match["height"] is None else int(match["height"]))


@click.command("url", cls=JsonCommand)
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
                   "(AWS_ENDPOINT_URL and botocore's credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                   "AWS_PROFILE or --profile).")
@profile_option
@click.option("--base", default="", metavar="URL", help="Prefix, e.g. https://img.example.com")
@signing_options
@json_option
def command(image: str, size: tuple[int | None, int | None], fit_in: bool, smart: bool, filters: str,
            expires_in: int | None, expires_at: int | None, preset: str | None, version: str | None,
            profile: str | None, base: str, key: str | None, algorithm: str, as_json: bool) -> None:
    """Print a signed URL for BUCKET/KEY (decoded: spaces, '+' and unicode are escaped here)."""
    signing_key = require_key(key)
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires or --expires-at, not both")
    width, height = size
    options: dict[str, Any] = {"width": width, "height": height, "fit_in": fit_in, "smart": smart, "filters": filters}
    if preset is not None:
        if any((width, height, fit_in, smart, filters)):
            raise click.UsageError("--preset cannot be combined with --size/--fit-in/--smart/--filters")
        options = {"params": _preset(preset)}
    if version == "auto":
        version = _version_from_s3(image, profile)
    now = time.time()
    try:
        url = build_url(image, key=signing_key, base=base, expires_in=expires_in, expires_at=expires_at,
                        version=version, algorithm=algorithm, now=now, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    warnings = []
    if expires_at is not None and expires_at <= now:
        # still printed (a test may want an expired link), but nobody should ship it by mistake
        when = datetime.datetime.fromtimestamp(expires_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        warnings.append(f"--expires-at {expires_at} ({when}) is in the past: this link answers 410")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit("url", Exit.OK, url=url, image=image, version=version,
             expires_at=int(now + expires_in) if expires_in is not None else expires_at, warnings=warnings)
    else:
        click.echo(url)


def _preset(name: str) -> Any:
    import os

    from thumbor_plugins import presets

    try:
        known = presets.load(os.environ.get("IMGSTACK_PRESETS_FILE") or None)
    except presets.PresetError as error:
        raise CliError(str(error), Exit.CONFIG) from None
    if name not in known:
        raise click.UsageError(f"unknown preset {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def _version_from_s3(image: str, profile: str | None) -> str:
    """A short version token from the object's ETag: it changes whenever the content does."""
    from thumbor_plugins.s3 import BadLocation, NotFound, S3Path
    from thumbor_plugins.s3.sync import translate

    from .exits import exit_for
    from .options import open_s3

    try:
        where = S3Path.parse(image, scheme=False)
    except BadLocation as error:
        raise click.UsageError(f"--version auto needs BUCKET/KEY: {error}") from None
    if not where.key:
        raise click.UsageError("--version auto needs BUCKET/KEY")
    try:
        head = open_s3(profile=profile).head_object(Bucket=where.bucket, Key=where.key)
    except CliError:
        raise
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        reason = translate(error)
        # no such object: this one item failed; anything else is the configuration's or S3's
        code = Exit.FAILED if isinstance(reason, NotFound) else exit_for(reason)
        raise CliError(f"cannot read the ETag of {where}: {type(reason).__name__}: {reason}", code) from None
    return version_token(str(head["ETag"]))


def version_token(etag: str) -> str:
    """12 characters of the ETag (hex MD5, or a multipart ETag's hex part)."""
    return "".join(ch for ch in etag if ch.isalnum())[:12]
