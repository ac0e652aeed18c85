"""``imgstack purge BUCKET/KEY [--prefix]``: delete every derived object of an original (or of every
original under a prefix) from the derived bucket — what a delete event does, by hand."""

from __future__ import annotations

import click

from .warm import progress, s3_client, s3_failure, s3_options


def derived_prefix(image: str, *, prefix: bool) -> str:
    """The derived-bucket prefix of ``BUCKET/KEY`` (its variants: ``bucket/key/``), or with
    ``prefix`` of every original whose key starts with KEY (``bucket/KEY``, S3 prefix semantics)."""
    from thumbor_plugins.sources import Source

    bucket, _, key = image.lstrip("/").partition("/")
    if not bucket:
        raise click.BadParameter("expected BUCKET/KEY", param_hint="BUCKET/KEY")
    if prefix:
        return f"{bucket}/{key}"
    if not key or key.endswith("/"):
        raise click.BadParameter("expected BUCKET/KEY of one original (use --prefix for a folder)",
                                 param_hint="BUCKET/KEY")
    return Source(bucket, key).prefix


@click.command("purge")
@click.argument("image", metavar="BUCKET/KEY")
@click.option("--prefix", "as_prefix", is_flag=True, help="Purge every original whose key starts with KEY.")
@click.option("--derived-bucket", default="images-derived", show_default=True, envvar="IMGSTACK_DERIVED_BUCKET",
              show_envvar=True, help="Bucket of rendered results.")
@s3_options
def command(image: str, as_prefix: bool, derived_bucket: str, endpoint_url: str | None, access_key: str | None,
            secret_key: str | None) -> None:
    """Delete every rendered variant of BUCKET/KEY (decoded key) from the derived bucket."""
    prefix = derived_prefix(image, prefix=as_prefix)
    client = s3_client(endpoint_url, access_key, secret_key)
    listing: dict = {"Bucket": derived_bucket, "Prefix": prefix}
    wanted = lambda key: True  # noqa: E731 - --prefix: everything under it, as asked
    if not as_prefix:
        # one original: exactly its variants, never those of originals under a folder of its name
        from thumbor_plugins.derived import is_variant
        from thumbor_plugins.sources import Source

        bucket, _, key = image.lstrip("/").partition("/")
        listing["Delimiter"] = "/"
        wanted = lambda name: is_variant(Source(bucket, key), name)  # noqa: E731
    purged = 0
    try:
        with progress(0, "object") as bar:
            for page in client.get_paginator("list_objects_v2").paginate(**listing):
                keys = [item["Key"] for item in page.get("Contents", []) or [] if wanted(item["Key"])]
                if not keys:
                    continue
                bar.total = (bar.total or 0) + len(keys)
                # a page holds at most 1000 keys: exactly one DeleteObjects call
                response = client.delete_objects(
                    Bucket=derived_bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
                errors = response.get("Errors") or []
                if errors:
                    raise click.ClickException(
                        f"S3 refused to delete {len(errors)} objects, e.g. {errors[0].get('Key')}: {errors[0].get('Code')}")
                purged += len(keys)
                bar.update(len(keys))
    except click.ClickException:
        raise
    except Exception as error:  # noqa: BLE001 - reported as a clear CLI error
        raise s3_failure(error, f"cannot purge s3://{derived_bucket}/{prefix}") from None
    click.echo(f"purged {purged} objects")
