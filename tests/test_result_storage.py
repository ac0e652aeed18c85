"""The result storage against the real S3 server: a render is stored only while its original is
still the one that was rendered (a delete or an overwrite during the render must not leave a
result behind the purge its event triggered)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from thumbor.config import Config
from thumbor.context import Context, RequestParameters

from thumbor_plugins import derived, loader
from thumbor_plugins.pipeline import Decision
from thumbor_plugins.result_storage import Storage
from thumbor_plugins.s3.aio import for_config
from thumbor_plugins.sources import Source
from thumbor_plugins.thumbor_adapter import state_of
from thumbor_plugins.urls import parse

from .conftest import BUCKET, DERIVED, FIXTURES

RENDERED = b"\xff\xd8\xff\xe0 a rendered jpeg"
ORIGINAL = (FIXTURES / "800px-Guido-portrait-2014.jpg").read_bytes()


def s3_config(s3_server) -> Config:  # noqa: ANN001
    return Config(
        IMGSTACK_S3_ENDPOINT_URL=s3_server.endpoint_url,
        IMGSTACK_S3_ACCESS_KEY=s3_server.access_key,
        IMGSTACK_S3_SECRET_KEY=s3_server.secret_key,
        IMGSTACK_ALLOWED_BUCKETS=(BUCKET,),
        IMGSTACK_DERIVED_BUCKET=DERIVED,
    )


def stored_after_render(s3_server, s3, key: str, between) -> bool:  # noqa: ANN001
    """Load ``key`` with the loader, run ``between()`` (what happens during the render), then let
    the result storage put; True when the result was stored."""
    config = s3_config(s3_server)
    source = Source(BUCKET, key)
    params = parse(f"100x100/{BUCKET}/{key}")
    info = Decision(params=params, source=source, format="jpeg",
                       derived_key=derived.derived_key(source, "100x100/x", "jpeg"), expires_at=None)
    context = Context(config=config)
    context.request = RequestParameters()
    state_of(context.request).decision = info

    async def render() -> str | None:
        try:
            loaded = await loader.load(context, f"{BUCKET}/{key}")
            assert loaded.successful
            between()
            return await Storage(context).put(RENDERED)
        finally:
            await for_config(config).close()

    counted = {outcome: _writes(outcome) for outcome in ("stored", "withdrawn")}
    stored = asyncio.run(render())
    exists = s3.list_objects_v2(Bucket=DERIVED, Prefix=info.derived_key)["KeyCount"] == 1
    assert exists == (stored is not None)
    # the metric says which it was, for operators (and for tests that must wait for the check)
    outcome = "stored" if exists else "withdrawn"
    assert {name: _writes(name) - before for name, before in counted.items()} == \
        {name: float(name == outcome) for name in counted}
    return exists


def _writes(outcome: str) -> float:
    from thumbor_plugins import metrics

    value = metrics.REGISTRY.get_sample_value("imgstack_result_storage_writes_total", {"outcome": outcome})
    return value or 0.0


def test_render_of_an_unchanged_original_is_stored(s3_server, s3, uid) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/a.jpg", Body=ORIGINAL)
    assert stored_after_render(s3_server, s3, f"{uid}/a.jpg", lambda: None)


def test_should_not_store_a_render_whose_original_was_deleted_meanwhile(s3_server, s3, uid) -> None:
    key = f"{uid}/deleted.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=ORIGINAL)
    assert not stored_after_render(s3_server, s3, key, lambda: s3.delete_object(Bucket=BUCKET, Key=key))


def test_should_not_store_a_render_whose_original_was_overwritten_meanwhile(s3_server, s3, uid) -> None:
    key = f"{uid}/overwritten.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=ORIGINAL)
    assert not stored_after_render(s3_server, s3, key, lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"new photo"))


def test_should_not_keep_a_render_whose_original_was_overwritten_while_its_result_was_being_written(
        s3_server, s3, uid, monkeypatch) -> None:  # noqa: ANN001
    """The overwrite lands after the render but before its result does: the overwrite's purge may
    have listed the results already, so a check made before the write would have let it live on."""
    from thumbor_plugins.s3.aio import AsyncS3

    key = f"{uid}/raced.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=ORIGINAL)
    write = AsyncS3.put

    async def overwrite_then_write(self, bucket, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if bucket == DERIVED:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"new photo")
        return await write(self, bucket, *args, **kwargs)

    monkeypatch.setattr(AsyncS3, "put", overwrite_then_write)
    assert not stored_after_render(s3_server, s3, key, lambda: None)


# --- the second purge (thumbor_plugins.events.runner) ---------------------------------------

def purge_then_late_write(s3_server, s3, key: str, *, upload_again: bool, monkeypatch) -> list[str]:  # noqa: ANN001
    """A purge job, then a result written late (a render that checked its original just before
    the delete); the derived keys left once the second purge has run."""
    from thumbor_plugins.events import PURGE, Job
    from thumbor_plugins.events import runner as runner_module

    monkeypatch.setattr(runner_module, "REPURGE_DELAY", 0.3)
    config = s3_config(s3_server)
    source = Source(BUCKET, key)
    context = SimpleNamespace(config=config, server=SimpleNamespace(ip="127.0.0.1", port=1, security_key="k"))

    async def go() -> None:
        try:
            runner = runner_module.Runner(context)
            outcome = await runner(Job(PURGE, source, f"{BUCKET}/{key}"))
            assert outcome.ok
            s3.put_object(Bucket=DERIVED, Key=derived.derived_key(source, "100x100/late", "jpeg"), Body=RENDERED)
            if upload_again:
                s3.put_object(Bucket=BUCKET, Key=key, Body=ORIGINAL)
            await asyncio.gather(*runner._repurges)
        finally:
            await for_config(config).close()

    asyncio.run(go())
    listing = s3.list_objects_v2(Bucket=DERIVED, Prefix=source.prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_second_purge_removes_a_result_written_after_the_first(s3_server, s3, uid, monkeypatch) -> None:
    assert purge_then_late_write(s3_server, s3, f"{uid}/gone.jpg", upload_again=False, monkeypatch=monkeypatch) == []


def test_second_purge_keeps_the_variants_of_an_original_uploaded_again(s3_server, s3, uid, monkeypatch) -> None:
    key = f"{uid}/back.jpg"
    left = purge_then_late_write(s3_server, s3, key, upload_again=True, monkeypatch=monkeypatch)
    assert left == [derived.derived_key(Source(BUCKET, key), "100x100/late", "jpeg")]


# --- IMGSTACK_REVALIDATE_ORIGINALS: S3 servers that send no events -----------------------------

def _solid_jpeg(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _red_of(body: bytes) -> int:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(body)).convert("RGB").getpixel((5, 5))[0]


@pytest.fixture(scope="module")
def revalidating(thumbor_factory):  # noqa: ANN001, ANN201
    return thumbor_factory(IMGSTACK_REVALIDATE_ORIGINALS="true")


def test_should_not_serve_a_stored_result_of_an_overwritten_original_when_revalidating(
        s3, revalidating, uid) -> None:
    import httpx

    from .conftest import sign
    from .test_serving import derived_objects

    key = f"{uid}/swap.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=_solid_jpeg((255, 0, 0)))
    url = sign(f"{BUCKET}/{key}", base=revalidating.url, width=32, height=24)
    assert _red_of(httpx.get(url).content) > 200
    stored = derived_objects(s3, key, at_least=1)
    head = s3.head_object(Bucket=DERIVED, Key=stored[0])
    assert head["Metadata"]["source-etag"] == s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    assert _red_of(httpx.get(url).content) > 200  # a hit while the original is unchanged

    s3.put_object(Bucket=BUCKET, Key=key, Body=_solid_jpeg((0, 0, 255)))  # no event, no purge
    assert _red_of(httpx.get(url).content) < 50

    s3.delete_object(Bucket=BUCKET, Key=key)
    assert httpx.get(url).status_code == 404


def test_without_revalidation_a_stored_result_is_served_until_purged(s3, thumbor, uid) -> None:
    """The default relies on events to purge (what the setting is for, shown)."""
    import httpx

    from .conftest import sign
    from .test_ops import scrape, wait_until_stored

    key = f"{uid}/swap.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=_solid_jpeg((255, 0, 0)))
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=32, height=24)
    before = scrape(thumbor.url)
    assert _red_of(httpx.get(url).content) > 200
    wait_until_stored(thumbor.url, before)  # an overwrite before the check would withdraw it
    s3.put_object(Bucket=BUCKET, Key=key, Body=_solid_jpeg((0, 0, 255)))
    assert _red_of(httpx.get(url).content) > 200
