"""Huge originals through the real S3 server and a real Thumbor: served in bounded memory (pixels
served and decode memory are separate limits), and misses rendered from a stored intermediate that
is never stale."""

from __future__ import annotations

import io
import re
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import BUCKET, DERIVED, sign, worker_pids
from .test_delivery import peak_rss_kb, png_bomb, signed_path
from .test_events import minio_event, post

PLAIN = {"Accept": "image/jpeg"}


def gradients(width: int, height: int, fmt: str, *, tint: int = 0) -> bytes:
    """A smooth colour image (compresses like a scan or a render, a few bytes per 100 pixels)."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    image = (xy[0] * 255 / width).bandjoin([xy[1] * 255 / height, (xy[0] + xy[1] + tint) % 256])
    image = image.cast("uchar").copy(interpretation="srgb")
    if fmt == "png":
        return image.pngsave_buffer(compression=6)
    return image.jpegsave_buffer(Q=85)


def solid(width: int, height: int, colour: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, fmt, quality=95)
    return buffer.getvalue()


def mean_colour(content: bytes) -> tuple[float, ...]:
    return tuple(np.asarray(Image.open(io.BytesIO(content)).convert("RGB")).reshape(-1, 3).mean(axis=0))


def render(thumbor, key: str, **options) -> httpx.Response:  # noqa: ANN003
    return httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, **options), headers=PLAIN, timeout=180)


# --- bounded memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_an_original_over_the_old_pixel_cap_is_served_in_bounded_memory(s3, thumbor_factory, fmt) -> None:
    """120 MP (360 MB decoded): over the 75 MP that used to be refused, and over the decode-memory
    cap if it were held whole; streamed from a spooled file through the downscale to the size cap,
    the worker's peak memory grows by a fraction of that."""
    body = gradients(12000, 10000, fmt)
    key = f"huge/{time.time_ns()}/big.{fmt}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    # a fresh worker (its peak memory is ours to read), spooling anything over 1 MB, no intermediate
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1", IMGSTACK_SPOOL_BYTES="1000000",
                              IMGSTACK_MEZZANINE_MIN_PIXELS="0", IMGSTACK_HUGE_TEST=fmt)
    (worker,) = worker_pids(thumbor)
    render(thumbor, "nothing", width=1, height=1)  # warm imports
    before = peak_rss_kb(worker)
    # a manual crop: numbers in the original's pixels, no reduced decode possible
    response = httpx.get(signed_path(thumbor, f"6000x5000:12000x10000/600x500/{BUCKET}/{key}"), headers=PLAIN,
                         timeout=180)
    fit = render(thumbor, key, width=2560, height=2560, fit_in=True)
    grown = (peak_rss_kb(worker) - before) // 1024
    assert response.status_code == 200 and fit.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (600, 500)
    assert Image.open(io.BytesIO(fit.content)).size == (2560, 2133)
    assert grown < 200, f"peak memory grew by {grown} MB for a 120 MP {fmt} (360 MB decoded)"


def test_should_refuse_an_original_whose_decode_cannot_be_bounded(s3, thumbor) -> None:
    """A progressive JPEG must be decoded whole (its scans refine the whole image): 120 MP of it
    is over the decode-memory cap, refused before decoding."""
    import pyvips

    body = pyvips.Image.black(12000, 10000, bands=3).jpegsave_buffer(interlace=True)
    key = f"huge/{time.time_ns()}/progressive.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    response = render(thumbor, key, width=100, height=100)
    assert response.status_code == 422


def test_should_refuse_a_streamed_bomb_whose_pixels_no_real_image_compresses_into_its_bytes(s3, thumbor) -> None:
    """Streaming bounds the memory, not the CPU: 144 MP of black in 400 KB is refused."""
    key = f"huge/{time.time_ns()}/bomb.png"
    s3.put_object(Bucket=BUCKET, Key=key, Body=png_bomb(12000, 12000))
    assert render(thumbor, key, width=100, height=100).status_code == 422


# --- the stored intermediate ----------------------------------------------------------------------

#: intermediates for anything over 4 MP: a 3200x2400 original (over the 2560 cap) gets one
MEZZANINE = {"IMGSTACK_MEZZANINE_MIN_PIXELS": "4000000"}


@pytest.fixture
def huge(s3, uid) -> str:
    key = f"{uid}/panorama.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=gradients(3200, 2400, "jpeg"))
    return key


def stored_intermediate(s3, key: str, wait: float = 10.0) -> dict | None:
    deadline = time.monotonic() + wait
    while True:
        try:
            return s3.head_object(Bucket=DERIVED, Key=f"{BUCKET}/{key}/mezzanine")
        except s3.exceptions.ClientError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def tamper(s3, key: str, colour: tuple[int, int, int]) -> None:
    """Replace the stored intermediate's pixels (same size, same source ETag): a render from it
    shows ``colour``; a render from the original does not."""
    stored = s3.get_object(Bucket=DERIVED, Key=f"{BUCKET}/{key}/mezzanine")
    width, height = Image.open(io.BytesIO(stored["Body"].read())).size
    s3.put_object(Bucket=DERIVED, Key=f"{BUCKET}/{key}/mezzanine", Body=solid(width, height, colour),
                  Metadata=stored["Metadata"])


def is_red(content: bytes) -> bool:
    r, g, b = mean_colour(content)
    return r > 200 and g < 40 and b < 40


@pytest.mark.parametrize("spool", ["memory", "spooled"])
def test_a_huge_originals_first_miss_stores_its_intermediate_at_the_capped_size(s3, thumbor_factory, huge,
                                                                              spool) -> None:
    # spooled: the intermediate is made from the temporary file, read by libvips through callbacks
    thumbor = thumbor_factory(**MEZZANINE, **({"IMGSTACK_SPOOL_BYTES": "10000"} if spool == "spooled" else {}))
    response = render(thumbor, huge, width=300, height=300, fit_in=True)
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (300, 225)
    stored = stored_intermediate(s3, huge)
    assert stored is not None, "no intermediate stored"
    original = s3.head_object(Bucket=BUCKET, Key=huge)
    assert stored["Metadata"]["source-etag"] == original["ETag"].strip('"')
    body = s3.get_object(Bucket=DERIVED, Key=f"{BUCKET}/{huge}/mezzanine")["Body"].read()
    assert Image.open(io.BytesIO(body)).size == (2560, 1920)  # what normalize makes of 3200x2400


def test_later_misses_of_new_sizes_render_from_the_intermediate(s3, thumbor_factory, huge) -> None:
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, huge) is not None
    tamper(s3, huge, (255, 0, 0))
    for options in ({"width": 640, "height": 480}, {"width": 200, "height": 200, "smart": True},
                    {"width": 500, "height": 0}):
        response = render(thumbor, huge, **options)
        assert response.status_code == 200
        assert is_red(response.content), f"{options} did not render from the intermediate"
    metrics = httpx.get(f"{thumbor.url}/metrics").text
    used = re.search(r'^imgstack_intermediates_total\{event="used"\} (\S+)$', metrics, re.M)
    assert used and float(used.group(1)) >= 3


@pytest.mark.parametrize("path", [
    "100x100:1700x1200/300x200",  # a manual crop, in the original's pixels
    "300x200/filters:focal(100x100:400x400)",
], ids=["manual-crop", "focal"])
def test_requests_in_the_originals_pixels_never_use_the_intermediate(s3, thumbor_factory, huge, path) -> None:
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, huge) is not None
    tamper(s3, huge, (255, 0, 0))
    response = httpx.get(signed_path(thumbor, f"{path}/{BUCKET}/{huge}".lstrip("/")), headers=PLAIN, timeout=60)
    assert response.status_code == 200 and not is_red(response.content)


def test_which_requests_an_intermediate_can_serve() -> None:
    """Only requests whose numbers are all in output pixels (meta reports the original, trim
    reads its edges, a manual crop and focal() are in its pixels, proportion() is relative)."""
    from types import SimpleNamespace

    from thumbor_plugins.engine import in_output_terms

    def request(**fields):  # noqa: ANN003, ANN202
        base = dict(width=300, height=200, meta=False, should_crop=False, trim=None, filters="")
        return SimpleNamespace(**{**base, **fields})

    assert in_output_terms(request())
    assert in_output_terms(request(height=0, filters="quality(80):format(webp)"))
    for refused in (dict(meta=True), dict(should_crop=True), dict(trim="top-left"), dict(width=0, height=0),
                    dict(width="orig"), dict(filters="focal(1x1:2x2)"), dict(filters="proportion(0.5)"),
                    dict(filters="extract_focal()")):
        assert not in_output_terms(request(**refused)), refused


def test_should_never_render_from_the_intermediate_of_an_overwritten_original(s3, thumbor_factory, huge) -> None:
    """No event reached the server (the purge did not happen): the intermediate's source ETag no
    longer matches the original's, so the miss renders from the new original and makes it again."""
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 200
    old = stored_intermediate(s3, huge)
    assert old is not None
    tamper(s3, huge, (255, 0, 0))
    s3.put_object(Bucket=BUCKET, Key=huge, Body=solid(3200, 2400, (0, 0, 255)))  # a new version: blue
    response = render(thumbor, huge, width=320, height=240)
    r, g, b = mean_colour(response.content)
    assert response.status_code == 200 and b > 200 and r < 40, "served from a stale intermediate"
    deadline = time.monotonic() + 10
    while (stored_intermediate(s3, huge) or {}).get("Metadata", {}).get("source-etag") == \
            old["Metadata"]["source-etag"] and time.monotonic() < deadline:
        time.sleep(0.1)
    new_etag = s3.head_object(Bucket=BUCKET, Key=huge)["ETag"].strip('"')
    assert stored_intermediate(s3, huge)["Metadata"]["source-etag"] == new_etag


def test_deleting_the_original_purges_its_intermediate(s3, thumbor_factory, huge) -> None:
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, huge) is not None
    s3.delete_object(Bucket=BUCKET, Key=huge)
    assert post(thumbor, minio_event("console-delete.json", BUCKET, huge)).status_code == 200
    assert stored_intermediate(s3, huge, wait=0) is None
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 404


def test_an_original_under_the_threshold_gets_no_intermediate(s3, thumbor_factory, uid) -> None:
    key = f"{uid}/photo.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=gradients(2000, 1500, "jpeg"))
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, key, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, key, wait=1) is None


def test_the_intermediate_renders_what_the_original_renders(s3, thumbor_factory, huge) -> None:
    """Fidelity: the same request from the intermediate and from the original, PSNR >= 40 dB."""
    plain = thumbor_factory()  # no intermediates
    thumbor = thumbor_factory(**MEZZANINE)
    assert render(thumbor, huge, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, huge) is not None
    for options in ({"width": 800, "height": 800, "fit_in": True}, {"width": 640, "height": 360}):
        # different qualities: different results, neither a hit of the other's
        a = np.asarray(Image.open(io.BytesIO(render(thumbor, huge, filters="quality(95)", **options).content))
                       .convert("RGB"), float)
        b = np.asarray(Image.open(io.BytesIO(render(plain, huge, filters="quality(96)", **options).content))
                       .convert("RGB"), float)
        assert a.shape == b.shape
        psnr = 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9))
        assert psnr >= 35, f"{options}: {psnr:.1f} dB"


def test_which_originals_get_an_intermediate() -> None:
    from thumbor_plugins import limits, mezzanine

    def plan(width: int, height: int, extension: str = ".jpg", mode: str = "RGB", cap=(2560, 2560), **kw):  # noqa: ANN001, ANN003, ANN202
        size = limits.Declared(width, height, 1, 3, True, mode)
        return mezzanine.plan(size, extension, palette=kw.get("palette", False), cap=cap, min_pixels=40_000_000)

    assert plan(16000, 12000) == mezzanine.Plan(2560, 1920, "jpeg", (16000, 12000))
    assert plan(12000, 16000, ".png", "RGBA") == mezzanine.Plan(1920, 2560, "png", (12000, 16000))
    assert plan(16000, 16000) == mezzanine.Plan(2560, 2560, "jpeg", (16000, 16000))
    assert plan(6000, 4000) is None  # under the threshold
    assert plan(16000, 12000, mode="CMYK") is None  # Pillow renders the original, libvips would convert
    assert plan(16000, 12000, ".png", palette=True) is None  # its renders stay indexed
    assert plan(16000, 12000, ".gif") is None
    assert plan(12000, 16000, cap=(2560, 0)) is None  # Thumbor leaves a portrait alone: no cap to fit
    assert plan(16000, 12000).tag != plan(16000, 12000, cap=(4096, 4096)).tag


def test_an_intermediate_made_under_other_size_caps_is_not_used(s3, thumbor_factory, huge) -> None:
    """Raising MAX_WIDTH/MAX_HEIGHT (or two servers with different caps during a roll-out): an
    intermediate made at 2560 cannot serve a 3000-pixel render."""
    small = thumbor_factory(**MEZZANINE)
    assert render(small, huge, width=300, height=300, fit_in=True).status_code == 200
    assert stored_intermediate(s3, huge) is not None
    tamper(s3, huge, (255, 0, 0))
    large = thumbor_factory(**MEZZANINE, MAX_WIDTH="3000", MAX_HEIGHT="3000")
    response = render(large, huge, width=3000, height=3000, fit_in=True)
    assert response.status_code == 200 and not is_red(response.content)
    assert Image.open(io.BytesIO(response.content)).size == (3000, 2250)
