"""``imgstack warm s3://BUCKET/PREFIX --url THUMBOR_URL``: render every preset of existing originals.

Lists the originals under the prefix and requests, from Thumbor, exactly what an upload event
warms (:func:`thumbor_plugins.events.warm_requests`: every preset × every negotiated format), so
each variant lands in the result storage under the key browsers later look up. Exit codes
(:mod:`.exits`): 1 if any request failed, 4 if Thumbor could not be reached at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import click

from .exits import CliError, Exit, fail
from .options import JsonCommand, emit, json_option, open_s3, require_key, s3_options, say, signing_options


def progress(total: int, unit: str) -> Any:
    """A tqdm bar on a terminal; a silent stand-in otherwise (the summary line is printed anyway)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), file=sys.stderr)


def load_presets() -> Mapping[str, Any]:
    """The presets file (IMGSTACK_PRESETS_FILE, else the shipped one); unreadable: exit code 3."""
    from thumbor_plugins import presets

    try:
        return presets.load(os.environ.get("IMGSTACK_PRESETS_FILE") or None)
    except presets.PresetError as error:
        raise CliError(str(error), Exit.CONFIG) from None


def list_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Object keys under ``prefix`` (folder markers skipped)."""
    from thumbor_plugins.s3.sync import list_prefix

    return (item.key for item in list_prefix(client, bucket, prefix) if not item.key.endswith("/"))


@dataclass(frozen=True)
class Failure:
    """A variant that was not warmed: ``status`` is Thumbor's answer, or None when none came
    (``error``: the transport error, e.g. ``ConnectError``)."""

    key: str
    preset: str
    format: str
    derived_key: str
    status: int | None
    error: str | None

    def __str__(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"{answer} {self.preset} {self.format} {self.derived_key}"


@click.command("warm", cls=JsonCommand)
@click.argument("location", metavar="s3://BUCKET/PREFIX")
@click.option("--url", "base", required=True, envvar="IMGSTACK_URL", show_envvar=True, metavar="THUMBOR_URL",
              help="Thumbor's base URL, e.g. http://127.0.0.1:8888")
@signing_options
@click.option("--preset", "names", multiple=True, metavar="NAME", help="Only these presets (repeatable; default: all).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel requests.")
@click.option("--max-link-lifetime", "link_lifetime", type=click.IntRange(min=0), default=None,
              envvar="IMGSTACK_MAX_LINK_LIFETIME", show_envvar=True, metavar="SECONDS",
              help="The server's maximum link lifetime, if it has one (0: none): warm links are valid "
                   "300 s, or a little less than that maximum.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Seconds per request.")
@s3_options
@json_option
def command(location: str, base: str, key: str | None, algorithm: str, names: tuple[str, ...], concurrency: int,
            link_lifetime: int | None, timeout: float, endpoint_url: str | None, access_key: str | None,
            secret_key: str | None, profile: str | None, as_json: bool) -> None:
    """Render every preset, in every negotiated format, of each original under s3://BUCKET/PREFIX."""
    from thumbor_plugins.events import warm_link_lifetime, warm_requests
    from thumbor_plugins.s3 import BadLocation, S3Path
    from thumbor_plugins.sources import Source

    signing_key = require_key(key)
    try:
        import httpx
    except ImportError:  # a declared dependency: only a broken installation lacks it
        raise CliError("imgstack warm needs httpx (pip install httpx)", Exit.CONFIG) from None
    try:
        where = S3Path.parse(location)
    except BadLocation as error:
        raise click.BadParameter(str(error), param_hint="s3://BUCKET/PREFIX") from None
    known = load_presets()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.UsageError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(known)}")

    client = open_s3(endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key, profile=profile)
    try:
        keys = list(list_keys(client, where.bucket, where.key))
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        raise fail(error, f"cannot list {where}") from None

    lifetime = warm_link_lifetime(link_lifetime)

    def requests_of(object_key: str) -> list[Any]:
        return warm_requests(f"{where.bucket}/{object_key}", Source(where.bucket, object_key), known,
                             key=signing_key, base=base, algorithm=algorithm, names=names or None,
                             expires_in=lifetime)

    # the same presets and formats for every image: as many variants each
    per_image = len(requests_of(keys[0])) if keys else 0
    total = len(keys) * per_image
    failures: list[Failure] = []
    with httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=concurrency)) as http, \
            progress(total, "variant") as bar:

        def warm_image(object_key: str) -> list[Failure]:
            failed = []
            # signed when the image's turn comes: a long backfill must not outlive its links
            for request in requests_of(object_key):
                status: int | None = None
                error: str | None = None
                for _attempt in (1, 2):
                    try:
                        status = http.get(request.url, headers={"Accept": request.accept}).status_code
                        error = None
                        break
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        # a kept-alive connection the server closed as it was reused: the GET is
                        # idempotent, sent once more on a new connection
                        error = type(exc).__name__
                    except httpx.HTTPError as exc:
                        error = type(exc).__name__
                        break
                if status != 200:
                    failed.append(Failure(object_key, request.preset, request.format, request.derived_key,
                                          status, error))
                bar.update(1)
            return failed

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for failed in pool.map(warm_image, keys):
                failures.extend(failed)
    for failure in failures:
        click.echo(f"failed: {failure}", err=True)
    if any(failure.status in (403, 410) for failure in failures):
        click.echo("hint: the server refused the warm links: check --key/SECURITY_KEY and, when the server caps "
                   "link lifetimes, pass that cap as --max-link-lifetime (or IMGSTACK_MAX_LINK_LIFETIME)", err=True)
    code, problem = Exit.OK, None
    if failures:
        code = Exit.FAILED
        if len(failures) == total and all(f.status is None for f in failures):
            # not one answer from Thumbor: it is down or the URL is wrong, not the images
            code, problem = Exit.UNAVAILABLE, f"no answer from Thumbor at {base} ({failures[0].error})"
            click.echo(f"Error: {problem}", err=True)
    say(f"warmed {len(keys)} images, {total - len(failures)} variants, {len(failures)} failed", as_json=as_json)
    if as_json:
        emit("warm", code, error=problem, location=str(where), images=len(keys), variants=total - len(failures),
             failed=len(failures), failures=[asdict(failure) for failure in failures])
    sys.exit(int(code))
