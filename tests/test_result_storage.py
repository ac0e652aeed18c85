"""The result storage against the real S3 server: a render is stored only while its original is
still the one that was rendered (a delete or an overwrite during the render must not leave a
result behind the purge its event triggered)."""

from __future__ import annotations

import asyncio

import pytest
from thumbor.config import Config
from thumbor.context import Context, RequestParameters

from thumbor_plugins import derived
from thumbor_plugins.app import RequestInfo
from thumbor_plugins.result_storage import Storage
from thumbor_plugins.s3.aio import for_config
from thumbor_plugins.sources import Source
from thumbor_plugins.urls import parse

from .conftest import BUCKET, DERIVED

pytestmark = pytest.mark.integration

RENDERED = b"\xff\xd8\xff\xe0 a rendered jpeg"


def stored_after_render(s3_server, s3, key: str, between) -> bool:  # noqa: ANN001
    """Load ``key``'s ETag as the loader does, run ``between()`` (what happens during the render),
    then let the result storage put; True when the result was stored."""
    config = Config(
        IMGSTACK_S3_ENDPOINT_URL=s3_server.endpoint_url,
        IMGSTACK_S3_ACCESS_KEY=s3_server.access_key,
        IMGSTACK_S3_SECRET_KEY=s3_server.secret_key,
        IMGSTACK_DERIVED_BUCKET=DERIVED,
    )
    source = Source(BUCKET, key)
    params = parse(f"100x100/{BUCKET}/{key}")
    info = RequestInfo(params=params, source=source, format="jpeg",
                       derived_key=derived.derived_key(source, "100x100/x", "jpeg"), expires_at=None)
    context = Context(config=config)
    context.request = RequestParameters()
    context.request.imgstack = info
    context.request.imgstack_source_etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    between()

    async def put() -> str | None:
        try:
            return await Storage(context).put(RENDERED)
        finally:
            await for_config(config).close()

    stored = asyncio.run(put())
    exists = s3.list_objects_v2(Bucket=DERIVED, Prefix=info.derived_key)["KeyCount"] == 1
    assert exists == (stored is not None)
    return exists


def test_render_of_an_unchanged_original_is_stored(s3_server, s3, uid) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/a.jpg", Body=b"original")
    assert stored_after_render(s3_server, s3, f"{uid}/a.jpg", lambda: None)


def test_should_not_store_a_render_whose_original_was_deleted_meanwhile(s3_server, s3, uid) -> None:
    key = f"{uid}/deleted.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"original")
    assert not stored_after_render(s3_server, s3, key, lambda: s3.delete_object(Bucket=BUCKET, Key=key))


def test_should_not_store_a_render_whose_original_was_overwritten_meanwhile(s3_server, s3, uid) -> None:
    key = f"{uid}/overwritten.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"original")
    assert not stored_after_render(s3_server, s3, key, lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"new photo"))
