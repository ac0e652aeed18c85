"""``imgstack warm s3://BUCKET/PREFIX --url THUMBOR_URL``: render every preset of existing originals.

Lists the originals under the prefix and requests, from Thumbor, exactly what an upload event
warms (:func:`thumbor_plugins.events.warm_requests`: every preset × every negotiated format), so
each variant lands in the result storage under the key browsers later look up. Exit 1 if any
request failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click


def s3_options(function: Callable) -> Callable:
    """``--endpoint-url/--access-key/--secret-key``, each defaulting to the standard AWS_* env."""
    function = click.option("--secret-key", metavar="KEY", help="S3 secret key (default: AWS_SECRET_ACCESS_KEY).")(function)
    function = click.option("--access-key", metavar="ID", help="S3 access key (default: AWS_ACCESS_KEY_ID).")(function)
    function = click.option("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL).")(function)
    return function


def s3_client(endpoint_url: str | None, access_key: str | None, secret_key: str | None) -> Any:
    from thumbor_plugins.s3 import S3Settings
    from thumbor_plugins.s3.sync import client

    return client(S3Settings.from_env(endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key))


def s3_failure(error: Exception, what: str) -> click.ClickException:
    from thumbor_plugins.s3.sync import translate

    reason = translate(error)
    return click.ClickException(f"{what}: {type(reason).__name__}: {reason}")


def progress(total: int, unit: str) -> Any:
    """A tqdm bar on a terminal; a silent stand-in otherwise (the summary line is printed anyway)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), file=sys.stderr)


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise click.BadParameter(f"expected s3://BUCKET/PREFIX, got {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise click.BadParameter(f"no bucket in {url!r}")
    return bucket, prefix


def list_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Object keys under ``prefix`` (folder markers skipped)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []) or []:
            if not item["Key"].endswith("/"):
                yield item["Key"]


@click.command("warm")
@click.argument("location", metavar="s3://BUCKET/PREFIX")
@click.option("--url", "base", required=True, envvar="IMGSTACK_URL", show_envvar=True, metavar="THUMBOR_URL", help="Thumbor's base URL, e.g. http://127.0.0.1:8888")
@click.option("--key", envvar="SECURITY_KEY", show_envvar=True,
              help="Signing key (prefer the environment: command lines are visible to other users).")
@click.option("--algorithm", type=click.Choice(["sha1", "sha256"]), default="sha1",
              envvar="IMGSTACK_SIGNATURE_ALGORITHM", show_envvar=True, show_default=True)
@click.option("--preset", "names", multiple=True, metavar="NAME", help="Only these presets (repeatable; default: all).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel requests.")
@click.option("--max-link-lifetime", "link_lifetime", type=click.IntRange(min=0), default=None, envvar="IMGSTACK_MAX_LINK_LIFETIME",
              show_envvar=True, metavar="SECONDS",
              help="The server's maximum link lifetime, if it has one (0: none): warm links are valid "
                   "300 s, or a little less than that maximum.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Seconds per request.")
@s3_options
def command(location: str, base: str, key: str | None, algorithm: str, names: tuple[str, ...], concurrency: int,
            link_lifetime: int | None, timeout: float, endpoint_url: str | None, access_key: str | None, secret_key: str | None) -> None:
    """Render every preset, in every negotiated format, of each original under s3://BUCKET/PREFIX."""
    from thumbor_plugins import presets
    from thumbor_plugins.events import warm_link_lifetime, warm_requests
    from thumbor_plugins.sources import Source

    if not key:
        raise click.UsageError("no signing key: set SECURITY_KEY or pass --key")
    try:
        import httpx
    except ImportError:  # a test extra today; see the package's dependencies
        raise click.ClickException("imgstack warm needs httpx (pip install httpx)") from None
    bucket, prefix = parse_s3_url(location)
    try:
        known = presets.load(os.environ.get("IMGSTACK_PRESETS_FILE") or None)
    except presets.PresetError as error:
        raise click.UsageError(str(error)) from None
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.UsageError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(known)}")

    client = s3_client(endpoint_url, access_key, secret_key)
    try:
        keys = list(list_keys(client, bucket, prefix))
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        raise s3_failure(error, f"cannot list s3://{bucket}/{prefix}") from None

    lifetime = warm_link_lifetime(link_lifetime)

    def requests_of(object_key: str) -> list[Any]:
        return warm_requests(f"{bucket}/{object_key}", Source(bucket, object_key), known, key=key, base=base,
                             algorithm=algorithm, names=names or None, expires_in=lifetime)

    # the same presets and formats for every image: as many variants each
    per_image = len(requests_of(keys[0])) if keys else 0
    failures: list[str] = []
    with httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=concurrency)) as http, \
            progress(len(keys) * per_image, "variant") as bar:

        def warm_image(object_key: str) -> list[str]:
            failed = []
            # signed when the image's turn comes: a long backfill must not outlive its links
            for request in requests_of(object_key):
                try:
                    response = http.get(request.url, headers={"Accept": request.accept})
                    status = str(response.status_code) if response.status_code != 200 else None
                except httpx.HTTPError as error:
                    status = type(error).__name__
                if status is not None:
                    failed.append(f"{status} {request.preset} {request.format} {request.derived_key}")
                bar.update(1)
            return failed

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for failed in pool.map(warm_image, keys):
                failures.extend(failed)
    for failure in failures:
        click.echo(f"failed: {failure}", err=True)
    if any(failure.startswith(("403 ", "410 ")) for failure in failures):
        click.echo("hint: the server refused the warm links: check --key/SECURITY_KEY and, when the server caps "
                   "link lifetimes, pass that cap as --max-link-lifetime (or IMGSTACK_MAX_LINK_LIFETIME)", err=True)
    click.echo(f"warmed {len(keys)} images, {len(keys) * per_image - len(failures)} variants, {len(failures)} failed")
    if failures:
        sys.exit(1)
