"""Delivery over HTTP against a real Thumbor + S3: format negotiation, size and pixel caps,
versioned URLs, conditional requests, presets, smart crop on real portraits."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from thumbor_plugins.urls import Signer

from .conftest import BUCKET, SECURITY_KEY, sign, worker_pids
from .test_serving import derived_objects, upload

WALLPAPERS = Path(__file__).resolve().parents[1] / ".cache" / "images"
PORTRAITS = ["800px-Christophe_Henner_-_June_2016.jpg", "800px-Guido-portrait-2014.jpg", "800px-Katherine_Maher.jpg"]
AVIF = {"Accept": "image/avif,image/webp,image/apng,*/*;q=0.8"}
WEBP = {"Accept": "image/webp,*/*"}
JPEG = {"Accept": "image/jpeg"}


def put_bytes(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def size_of(content: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(content)).size


def signed_path(thumbor, path: str) -> str:
    return f"{thumbor.url}/{Signer([SECURITY_KEY]).sign(path)}/{path}"


# --- 1. format negotiation ---------------------------------------------------------------------

def test_format_follows_accept_and_each_format_is_stored_once(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=200, height=150)
    expected = [(AVIF, "image/avif"), (WEBP, "image/webp"), (JPEG, "image/jpeg"), ({}, "image/jpeg")]
    for headers, content_type in expected:
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type, headers
        assert response.headers["vary"] == "Accept"
        assert size_of(response.content) == (200, 150)
    # "no Accept" and "image/jpeg" negotiate the same format: 3 stored objects, not 4
    assert len(derived_objects(s3, key, at_least=3)) == 3
    # and each is served back as what its client can show (a hit never crosses formats)
    for headers, content_type in expected:
        assert httpx.get(url, headers=headers).headers["content-type"] == content_type


def test_explicit_format_wins_and_does_not_vary(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=200, height=150, filters="format(png)"),
                         headers=AVIF)
    assert response.headers["content-type"] == "image/png"
    assert "vary" not in response.headers


def test_negotiation_can_be_turned_off(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(AUTO_AVIF="false")
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=100, height=100), headers=AVIF)
    assert response.headers["content-type"] == "image/webp"


# --- 2. default resize and size cap ------------------------------------------------------------

def test_large_original_without_size_is_fitted_into_the_cap(s3, thumbor, uid) -> None:
    gradient = np.linspace(0, 255, 10240, dtype=np.uint8)[None, :, None].repeat(5000, 0).repeat(3, 2)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, "JPEG", quality=70)
    key = f"{uid}/huge.jpg"
    put_bytes(s3, key, buffer.getvalue())
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url), headers=JPEG, timeout=120)
    assert response.status_code == 200
    assert size_of(response.content) == (2560, 1250)


@pytest.mark.parametrize(("size", "expected"), [
    # "orig" is the original fitted into MAX_WIDTH x MAX_HEIGHT (4000x2500 -> 2560x1600): the
    # engine normalises an original larger than the cap before anything else
    ("origxorig", (2560, 1600)),
    ("origx100", (2560, 100)),
    ("100xorig", (100, 1600)),
])
def test_should_cap_orig_sizes_like_any_other_size(s3, thumbor, uid, size, expected) -> None:
    """``origxorig`` (or ``orig`` on one side) must not render and encode a whole 4000-pixel
    original when the cap is 2560."""
    key = f"{uid}/wide.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 2500), (90, 140, 200)).save(buffer, "JPEG", quality=70)
    put_bytes(s3, key, buffer.getvalue())
    response = httpx.get(signed_path(thumbor, f"{size}/{BUCKET}/{key}"), headers=JPEG, timeout=120)
    assert response.status_code == 200
    assert size_of(response.content) == expected


def test_orig_within_the_cap_stays_the_original_size(s3, thumbor, uid) -> None:
    key = f"{uid}/small.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 140, 200)).save(buffer, "JPEG", quality=70)
    put_bytes(s3, key, buffer.getvalue())
    response = httpx.get(signed_path(thumbor, f"origxorig/{BUCKET}/{key}"), headers=JPEG, timeout=60)
    assert size_of(response.content) == (640, 480)


@pytest.mark.skipif(not (WALLPAPERS / "flow-5120x2880.jpg").exists(),
                    reason="wallpapers not fetched: scripts/fetch-images")
def test_real_5k_wallpaper_without_size_is_fitted_into_the_cap(s3, thumbor, uid) -> None:
    key = f"{uid}/flow.jpg"
    put_bytes(s3, key, (WALLPAPERS / "flow-5120x2880.jpg").read_bytes())
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url), headers=JPEG, timeout=120)
    assert response.status_code == 200
    assert size_of(response.content) == (2560, 1440)


def test_should_clamp_absurd_requested_size(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    for options in ({"width": 99999, "height": 99999}, {"width": 99999, "height": 99999, "fit_in": True}):
        response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, **options), headers=JPEG, timeout=120)
        assert response.status_code == 200
        width, height = size_of(response.content)
        assert width <= 2560 and height <= 2560


# --- 3. pixel cap before decode ----------------------------------------------------------------

def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of black pixels: tiny compressed, huge decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width * 3 + 1)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A 1x1 GIF whose logical screen claims 60000x60000."""
    buffer = io.BytesIO()
    Image.new("P", (1, 1)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 60000, 60000)
    return bytes(data)


def animated_gif_bomb(width: int = 3000, height: int = 3000, frames: int = 12) -> bytes:
    """An animated GIF of 1x1 frames on a canvas that claims ``width`` x ``height``: Thumbor's
    engine expands every frame to the whole canvas (12 x 9 MP = 108 MP here, in 477 bytes)."""
    palette = [v for i in range(256) for v in (i, i, i)]
    images = [Image.new("P", (1, 1), i) for i in range(frames)]
    for image in images:
        image.putpalette(palette)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def raw_gif(canvas: tuple[int, int], frames: list[tuple[int, int, int, int]], tail: bytes = b";") -> bytes:
    """A GIF written block by block: ``frames`` are (left, top, width, height) descriptors, each
    with a tiny LZW stream; ``tail`` is what follows the last frame (the trailer, or damage)."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", *canvas, 0x80, 0, 0) + bytes(6))  # 2-colour table
    for left, top, width, height in frames:
        out += b"\x21\xf9\x04\x00\x05\x00\x00\x00"  # graphic control extension (delay)
        out += b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return bytes(out + tail)


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


BOMBS = {
    "png": lambda: png_bomb(12000, 12000),
    "gif": gif_bomb,
    "animated-gif": animated_gif_bomb,
    # frames larger than the screen: Pillow grows the canvas to the largest one
    "frame-overflow-gif": lambda: raw_gif((1, 1), [(0, 0, 1, 1)] + [(0, 0, 8000, 8000)] * 11),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_should_refuse_decompression_bomb_from_its_header(s3, thumbor_factory, uid, kind) -> None:
    # a fresh worker: its peak memory is ours to read
    thumbor = thumbor_factory(IMGSTACK_BOMB_TEST=kind, IMGSTACK_PROCESSES="1")
    (worker,) = worker_pids(thumbor)
    body = BOMBS[kind]()
    assert len(body) < 2 * 1024 * 1024
    key = f"{uid}/bomb.{kind.rsplit('-', 1)[-1]}"
    put_bytes(s3, key, body)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=100, height=100)
    httpx.get(sign(f"{BUCKET}/nothing-{uid}", base=thumbor.url, width=1, height=1))  # warm imports
    before = peak_rss_kb(worker)
    response = httpx.get(url, timeout=60)
    after = peak_rss_kb(worker)
    assert response.status_code == 422
    assert after - before < 16 * 1024, f"peak memory grew by {(after - before) // 1024} MB"


# --- 4. versioned URLs -------------------------------------------------------------------------

def test_permanent_versioned_url_is_immutable_for_a_year(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=90, version="abc123"), headers=JPEG)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    expiring = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=90, version="abc123",
                              expires_in=300), headers=JPEG)
    assert expiring.headers["cache-control"].startswith("private, max-age=")


def test_url_version_auto_follows_the_objects_etag(s3, s3_server, uid) -> None:
    from thumbor_plugins.cli import main

    key = f"{uid}/photo.jpg"
    upload(s3, key)
    env = {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
           "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "SECURITY_KEY": SECURITY_KEY}
    runner = CliRunner()
    first = runner.invoke(main, ["url", f"{BUCKET}/{key}", "--preset", "thumb", "--version", "auto"], env=env)
    assert first.exit_code == 0, first.output
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    assert f"v({etag[:12]})" in first.output
    upload(s3, key, "800px-Guido-portrait-2014.jpg")
    second = runner.invoke(main, ["url", f"{BUCKET}/{key}", "--preset", "thumb", "--version", "auto"], env=env)
    assert second.exit_code == 0 and second.output != first.output
    missing = runner.invoke(main, ["url", f"{BUCKET}/{uid}/none.jpg", "--version", "auto"], env=env)
    assert missing.exit_code != 0 and "NotFound" in missing.output


# --- 5. conditional requests -------------------------------------------------------------------

def test_etag_and_if_none_match_give_304(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=80, height=80)
    first = httpx.get(url, headers=JPEG)
    etag = first.headers["etag"]
    second = httpx.get(url, headers={**JPEG, "If-None-Match": etag})
    assert second.status_code == 304
    assert second.content == b""
    time.sleep(0.5)
    hit = httpx.get(url, headers=JPEG)
    assert "last-modified" in hit.headers
    assert httpx.get(url, headers={**JPEG, "If-Modified-Since": hit.headers["last-modified"]}).status_code == 304


@pytest.mark.parametrize("since", ["garbage", "Sun, 06 Nov 1994 08:49:37 +0000", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 99999999999999999999 08:49:37 GMT"])
def test_odd_if_modified_since_on_a_hit_is_not_a_500(s3, thumbor, uid, since) -> None:
    """Dates in RFC 9110's obsolete forms, numeric zones or garbage: compared or ignored, never 500."""
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=90)
    assert httpx.get(url, headers=JPEG).status_code == 200
    derived_objects(s3, key, at_least=1)
    response = httpx.get(url, headers={**JPEG, "If-Modified-Since": since})
    assert response.status_code == 200  # stored long after 1994, or an unreadable date
    assert size_of(response.content) == (90, 90)


def test_if_modified_since_304_on_a_hit_has_no_body_and_the_next_request_is_whole(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=91, height=91)
    assert httpx.get(url, headers=JPEG).status_code == 200
    derived_objects(s3, key, at_least=1)
    hit = httpx.get(url, headers=JPEG)
    later = "Fri, 01 Jan 2100 00:00:00 +0000"  # a numeric zone: still a date
    for since in (hit.headers["last-modified"], later):
        response = httpx.get(url, headers={**JPEG, "If-Modified-Since": since})
        assert (response.status_code, response.content) == (304, b"")
        assert response.headers["etag"] == hit.headers["etag"]  # the validator a 200 carries
    # If-None-Match wins over If-Modified-Since (RFC 9110): a stale ETag gets the image
    stale = httpx.get(url, headers={**JPEG, "If-Modified-Since": later, "If-None-Match": '"stale"'})
    assert stale.status_code == 200 and size_of(stale.content) == (91, 91)


def test_should_not_let_an_unsigned_jsonp_callback_poison_stored_metadata(s3, thumbor, uid) -> None:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    url = signed_path(thumbor, f"meta/50x50/{BUCKET}/{key}")
    poisoned = httpx.get(url + "?callback=alert", headers=JPEG)
    assert poisoned.status_code == 200
    assert poisoned.headers["content-type"].startswith("application/json")
    assert not poisoned.text.startswith("alert")
    derived_objects(s3, key, at_least=1)
    later = httpx.get(url, headers=JPEG)
    assert later.headers["content-type"].startswith("application/json")
    assert later.json()["thumbor"]["target"]["width"] == 50


# --- 6. presets --------------------------------------------------------------------------------

def test_only_presets_mode_refuses_other_transformations(s3, thumbor_factory, uid) -> None:
    from thumbor_plugins import presets

    thumbor = thumbor_factory(IMGSTACK_ONLY_PRESETS="true")
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    thumb = presets.load()["thumb"]
    ok = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, params=thumb, expires_in=60), headers=JPEG)
    assert ok.status_code == 200
    assert max(size_of(ok.content)) == 320
    versioned = sign(f"{BUCKET}/{key}", base=thumbor.url, params=thumb, filters=(), version="x1")
    assert httpx.get(versioned).status_code == 200
    refused = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=321, height=320, fit_in=True))
    assert refused.status_code == 403


def test_url_preset_cli_prints_the_preset_transformation() -> None:
    from thumbor_plugins.cli import main

    result = CliRunner().invoke(main, ["url", "images/a b.jpg", "--preset", "thumb", "--key", "k"])
    assert result.exit_code == 0
    assert result.output.strip().endswith("/fit-in/320x320/images/a%20b.jpg")
    unknown = CliRunner().invoke(main, ["url", "images/a.jpg", "--preset", "nope", "--key", "k"])
    assert unknown.exit_code == 2 and "thumb" in unknown.output


# --- 7. smart crop -----------------------------------------------------------------------------

def test_opencv_has_cascade_classifier_so_smart_crop_is_real() -> None:
    # opencv-python-headless 5.0 dropped it: Thumbor's detectors would silently do nothing
    assert hasattr(cv2, "CascadeClassifier")


def detect_face(image: bytes) -> tuple[int, int, int, int]:
    import thumbor

    cascade = cv2.CascadeClassifier(
        str(Path(thumbor.__file__).parent / "detectors/face_detector/haarcascade_frontalface_alt.xml"))
    gray = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(40, 40))
    assert len(faces) >= 1
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


@pytest.mark.parametrize("name", PORTRAITS)
def test_smart_crop_keeps_the_face_of_real_portraits(s3, thumbor, uid, name) -> None:
    body = upload(s3, f"{uid}/{name}", name)
    x, y, w, h = detect_face(body)
    center = x + w / 2
    path = f"meta/150x500/smart/{BUCKET}/{uid}/{name}"
    meta = httpx.get(signed_path(thumbor, path)).json()["thumbor"]
    crop = next(op for op in meta["operations"] if op["type"] == "crop")
    assert crop["left"] <= center <= crop["right"], (crop, (x, y, w, h))
    assert any(p["origin"] == "Face Detection" for p in meta["focal_points"])
    rendered = httpx.get(sign(f"{BUCKET}/{uid}/{name}", base=thumbor.url, width=150, height=500, smart=True),
                         headers=JPEG)
    assert size_of(rendered.content) == (150, 500)


def test_smart_crop_differs_from_centre_crop_where_the_face_is_off_centre(s3, thumbor, uid) -> None:
    name = PORTRAITS[0]
    body = upload(s3, f"{uid}/{name}", name)
    x, _, w, _ = detect_face(body)
    width = Image.open(io.BytesIO(body)).width
    centre_left, centre_right = (width - 160) / 2, (width + 160) / 2
    assert not centre_left <= x + w / 2 <= centre_right, "fixture no longer has an off-centre face"
    meta = httpx.get(signed_path(thumbor, f"meta/150x500/smart/{BUCKET}/{uid}/{name}")).json()["thumbor"]
    crop = next(op for op in meta["operations"] if op["type"] == "crop")
    assert crop["left"] <= x + w / 2 <= crop["right"]


# --- overload --------------------------------------------------------------------------------

def test_should_refuse_with_503_when_overloaded_and_recover(s3, thumbor_factory, uid) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # the limit is per worker process: one worker, so every request meets the same limit
    thumbor = thumbor_factory(IMGSTACK_MAX_CONCURRENT_REQUESTS="1", IMGSTACK_PROCESSES="1")
    rng = np.random.default_rng(7)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    key = f"{uid}/noise.jpg"
    put_bytes(s3, key, buffer.getvalue())
    urls = [sign(f"{BUCKET}/{key}", base=thumbor.url, width=100 + i, height=100) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda url: httpx.get(url, headers=JPEG, timeout=120), urls))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.headers["cache-control"] == "no-store"
    # every slot was released: one at a time, all succeed. The render that got its 200 still
    # holds its slot while it stores the result (after the response), so the first request may
    # meet a 503 for a moment: it retries as Retry-After asks, for a few seconds at most.
    for url in urls:
        for _ in range(10):
            response = httpx.get(url, headers=JPEG, timeout=120)
            if response.status_code != 503:
                break
            time.sleep(0.5)
        assert response.status_code == 200


def test_should_keep_the_slot_of_a_client_that_hung_up_until_its_work_ends(s3, s3_server, tmp_path, uid) -> None:
    """Overload bypass: clients that disconnect at once must not free slots their work still holds."""
    from urllib.parse import urlsplit

    from thumbor_plugins import embedded

    from .conftest import thumbor_env
    from .tcp_counter import CountingProxy

    key = f"{uid}/photo.jpg"
    upload(s3, key)
    proxy = CountingProxy("127.0.0.1", int(urlsplit(s3_server.endpoint_url).port))
    env = thumbor_env(s3_server, IMGSTACK_S3_ENDPOINT_URL=proxy.url, IMGSTACK_MAX_CONCURRENT_REQUESTS="1",
                      IMGSTACK_PROCESSES="1")
    thumbor = embedded.start_thumbor(env, tmp_path / "thumbor.log")
    try:
        proxy.delay = 3.0  # S3 answers slowly: the first request holds its slot for seconds
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=50, height=50), timeout=0.5)
        # the first client is gone; its fetch is still running
        second = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=60, height=60), timeout=10)
        assert second.status_code == 503
        proxy.delay = 0.0
        deadline = time.monotonic() + 30
        while (status := httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=70, height=70),
                                   timeout=30).status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == 200  # released once the abandoned work ended
    finally:
        thumbor.stop()
        proxy.close()


# --- renders that load a second image ------------------------------------------------------------


@pytest.mark.parametrize("second", ["watermark({mark},10,10,50)", "frame({mark})"])
def test_should_store_renders_that_load_a_second_image(s3, thumbor, uid, second) -> None:
    """watermark() and frame() load another image through the loader; its ETag used to replace the
    original's in the check the result storage makes when storing, so such renders were never
    stored and every request rendered again."""
    key, mark = f"{uid}/base.jpg", f"{uid}/mark.png"
    upload(s3, key)
    buffer = io.BytesIO()
    Image.new("RGBA", (30, 30), (255, 0, 0, 128)).save(buffer, "PNG")
    put_bytes(s3, mark, buffer.getvalue())
    path = f"120x90/filters:{second.format(mark=f'{BUCKET}/{mark}')}/{BUCKET}/{key}"
    assert httpx.get(signed_path(thumbor, path), headers=JPEG, timeout=60).status_code == 200
    assert len(derived_objects(s3, key, at_least=1)) == 1
