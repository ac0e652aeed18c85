"""``imgstack purge BUCKET/KEY [--prefix]``: delete every derived object of an original (or of every
original under a prefix) from the derived bucket — what a delete event does, by hand. Exit codes
(:mod:`.exits`): 1 when S3 refused some deletions (each listed), 3/4 when S3 cannot be used."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from thumbor_plugins.s3.location import BadLocation, S3Path
from thumbor_plugins.sources import Source

from .exits import Exit, fail
from .options import JsonCommand, emit, json_option, open_s3, s3_options, say
from .warm import progress


def derived_prefix(image: str, *, prefix: bool) -> str:
    """The derived-bucket prefix of ``BUCKET/KEY`` (its variants: ``bucket/key/``), or with
    ``prefix`` of every original whose key starts with KEY (``bucket/KEY``, S3 prefix semantics)."""
    source = _source(image)
    if prefix:
        return f"{source.bucket}/{source.key}"
    if not source.key or source.key.endswith("/"):
        raise click.BadParameter("expected BUCKET/KEY of one original (use --prefix for a folder)",
                                 param_hint="BUCKET/KEY")
    return source.prefix


def _source(image: str) -> Source:
    try:
        path = S3Path.parse(image, scheme=False)
    except BadLocation as error:
        raise click.BadParameter(str(error), param_hint="BUCKET/KEY") from None
    return Source(path.bucket, path.key)


@click.command("purge", cls=JsonCommand)
@click.argument("image", metavar="BUCKET/KEY")
@click.option("--prefix", "as_prefix", is_flag=True, help="Purge every original whose key starts with KEY.")
@click.option("--derived-bucket", default="images-derived", show_default=True, envvar="IMGSTACK_DERIVED_BUCKET",
              show_envvar=True, help="Bucket of rendered results.")
@s3_options
@json_option
def command(image: str, as_prefix: bool, derived_bucket: str, endpoint_url: str | None, access_key: str | None,
            secret_key: str | None, profile: str | None, as_json: bool) -> None:
    """Delete every rendered variant of BUCKET/KEY (decoded key) from the derived bucket.

    Running servers may serve a purged variant from memory for up to IMGSTACK_HOT_RESULTS_SECONDS
    (10 s); a delete event sent to a server reaches its memory at once."""
    from thumbor_plugins.s3.sync import delete_keys, list_prefix

    prefix = derived_prefix(image, prefix=as_prefix)
    client = open_s3(endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key, profile=profile)
    wanted: Callable[[str], bool] = lambda key: True  # noqa: E731 - --prefix: everything under it, as asked
    delimiter = None
    if not as_prefix:
        # one original: exactly its variants, never those of originals under a folder of its name
        from thumbor_plugins.derived import is_variant

        source = _source(image)
        delimiter = "/"
        wanted = lambda name: is_variant(source, name)  # noqa: E731
    purged = 0
    failed: dict[str, str] = {}

    def delete(keys: list[str]) -> None:
        nonlocal purged
        refused = delete_keys(client, derived_bucket, keys)
        failed.update(refused)
        purged += len(keys) - len(refused)
        bar.total = (bar.total or 0) + len(keys)
        bar.update(len(keys))

    try:
        with progress(0, "object") as bar:
            batch: list[str] = []
            for item in list_prefix(client, derived_bucket, prefix, delimiter=delimiter):
                if wanted(item.key):
                    batch.append(item.key)
                if len(batch) == 1000:  # one DeleteObjects call
                    delete(batch)
                    batch = []
            if batch:
                delete(batch)
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        raise fail(error, f"cannot purge s3://{derived_bucket}/{prefix}") from None
    for key, reason in failed.items():
        click.echo(f"failed: {key}: {reason}", err=True)
    code = Exit.FAILED if failed else Exit.OK
    say(f"purged {purged} objects" + (f", {len(failed)} failed" if failed else ""), as_json=as_json)
    if as_json:
        emit("purge", code, derived_bucket=derived_bucket, prefix=prefix, purged=purged, failed=len(failed),
             failures=[{"key": key, "error": reason} for key, reason in failed.items()])
    sys.exit(int(code))
