"""The embedded stack's own S3 events: SeaweedFS's filer webhook → /events/seaweedfs → the warm /
purge pipeline MinIO's events feed. Real ``imgstack dev``, real SeaweedFS webhook, uploads by boto3."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from thumbor_plugins.s3.settings import S3Settings
from thumbor_plugins.s3.sync import client as s3_client

from .conftest import sign
from .test_dev import start_dev, stop

ACCEPTS = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif,image/webp"}
#: the issue's bound for an upload/overwrite/delete to show in every link
SETTLE = 2.0


def solid(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def colour_of(body: bytes) -> tuple[int, int, int]:
    return Image.open(io.BytesIO(body)).convert("RGB").getpixel((10, 10))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):  # noqa: ANN001, ANN201
    tmp = tmp_path_factory.mktemp("events-dev")
    process, ready, _ = start_dev(tmp, "--no-samples", "--port", "0", "--s3-port", "0")
    try:
        ready["data_dir"] = tmp / "data"
        ready["s3"] = s3_client(S3Settings(endpoint_url=ready["s3_endpoint_url"], access_key=ready["s3_access_key"],
                                           secret_key=ready["s3_secret_key"]))
        yield ready
    finally:
        stop(process)


def derived(stack, key: str) -> list[str]:  # noqa: ANN001
    listing = stack["s3"].list_objects_v2(Bucket=stack["derived_bucket"], Prefix=f"images/{key}/", Delimiter="/")
    # not the folder SeaweedFS keeps (and lists) once the last variant under it is deleted
    return sorted(item["Key"] for item in listing.get("Contents", []) if not item["Key"].endswith("/"))


def until(predicate, timeout: float = SETTLE + 8):  # noqa: ANN001, ANN201
    """The first truthy value of ``predicate()`` (polled), and how long it took."""
    started = time.monotonic()
    while True:
        value = predicate()
        if value or time.monotonic() - started > timeout:
            return value, time.monotonic() - started
        time.sleep(0.1)


def link(stack, key: str) -> str:  # noqa: ANN001
    return sign(f"images/{key}", base=stack["thumbor_url"], key=stack["security_key"], width=60, height=40,
                expires_in=3600)


@pytest.mark.parametrize("name", ["plain.jpg", "a b/with space.jpg", "c+d/plus+sign.jpg", "100%/percent%25.jpg",
                                  "写真/猫の写真.jpg"])
def test_upload_overwrite_delete_reach_every_link_through_the_seaweedfs_webhook(stack, name) -> None:  # noqa: ANN001
    s3 = stack["s3"]
    url = link(stack, name)

    s3.put_object(Bucket="images", Key=name, Body=solid((220, 20, 20)), ContentType="image/jpeg")
    warmed, _ = until(lambda: derived(stack, name))
    assert warmed, "an upload made no variants: the event did not arrive"
    for accept in ACCEPTS.values():
        response = httpx.get(url, headers={"Accept": accept})
        assert response.status_code == 200 and colour_of(response.content)[0] > 180

    s3.put_object(Bucket="images", Key=name, Body=solid((20, 20, 220)), ContentType="image/jpeg")
    etag = s3.head_object(Bucket="images", Key=name)["ETag"].strip('"')

    def blue_everywhere() -> bool:
        for accept in ACCEPTS.values():
            response = httpx.get(url, headers={"Accept": accept})
            if response.status_code != 200 or colour_of(response.content)[2] < 180:
                return False
        return True

    blue, seconds = until(blue_everywhere)
    assert blue, "a link still serves the old picture after an overwrite"
    assert seconds < SETTLE + 2
    # and what stays stored was made from the new original (purged, then warmed again)
    rerendered, _ = until(lambda: all(
        s3.head_object(Bucket=stack["derived_bucket"], Key=k)["Metadata"].get("source-etag") == etag
        for k in derived(stack, name)))
    assert rerendered

    s3.delete_object(Bucket="images", Key=name)
    statuses, seconds = until(lambda: all(httpx.get(url, headers={"Accept": a}).status_code == 404
                                          for a in ACCEPTS.values()))
    assert statuses, "a deleted original is still served"
    assert seconds < SETTLE + 2
    left, _ = until(lambda: not derived(stack, name))
    assert left, derived(stack, name)


def test_folder_markers_and_multipart_staging_are_not_images(stack) -> None:  # noqa: ANN001
    s3 = stack["s3"]
    s3.put_object(Bucket="images", Key="markers/", Body=b"")
    upload = s3.create_multipart_upload(Bucket="images", Key="markers/big.jpg", ContentType="image/jpeg")
    part = s3.upload_part(Bucket="images", Key="markers/big.jpg", UploadId=upload["UploadId"], PartNumber=1,
                          Body=solid((20, 200, 20)))
    s3.complete_multipart_upload(Bucket="images", Key="markers/big.jpg", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert until(lambda: derived(stack, "markers/big.jpg"))[0], "a completed multipart upload was not warmed"
    events = httpx.get(stack["thumbor_url"] + "/metrics").text
    assert 'kind="event",status="200"' in events
    assert 'status="400"' not in "\n".join(line for line in events.splitlines() if 'kind="event"' in line)


def test_the_access_log_file_holds_one_json_line_per_request_and_nothing_else(stack) -> None:  # noqa: ANN001
    import json

    from thumbor_plugins import presets

    stack["s3"].put_object(Bucket="images", Key="logged/hit.jpg", Body=solid((90, 90, 90)), ContentType="image/jpeg")
    known = presets.load(None)
    # the upload's warm stores every preset in every format: wait for it, then ask for one
    assert until(lambda: len(derived(stack, "logged/hit.jpg")) >= len(known) * 3)[0]
    hit = sign("images/logged/hit.jpg", base=stack["thumbor_url"], key=stack["security_key"],
               params=known["thumb"], expires_in=3600)
    assert httpx.get(hit, headers={"Accept": "image/webp"}).status_code == 200
    url = link(stack, "nothing-here.jpg")
    assert httpx.get(url).status_code == 404  # tornado would log this one as plain text
    assert httpx.get(url.replace("/60x40/", "/61x40/")).status_code == 403
    log = stack["data_dir"] / "access.log"

    def ours() -> list[dict]:  # both lines: the two requests may be logged by different workers
        found = [json.loads(text) for text in log.read_text().splitlines() if "nothing-here.jpg" in text]
        return found if len(found) >= 2 else []

    entries, _ = until(ours)
    assert [(e["status"], e["format"]) for e in entries[-2:]] == [(404, None), (403, None)]
    for text in log.read_text().splitlines():
        entry = json.loads(text)  # every line, not only ours
        assert {"cache_hit", "format", "status", "path"} <= set(entry)
    images = [json.loads(text) for text in log.read_text().splitlines() if '"kind":"image"' in text]
    logged = [e for e in images if "filters:expires" in e["path"] and "logged/hit.jpg" in e["path"]]
    assert [(e["cache_hit"], e["format"]) for e in logged][-1] == (True, "webp")
