"""JPEG shrink-on-load (thumbor_plugins.engine): the same picture, decoded at a fraction of the cost.

Renders are compared with shrink-on-load on and off, two real Thumbor processes side by side; the
speed is measured by bench/shrink.py, not here."""

from __future__ import annotations

import io
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from PIL import Image

from thumbor_plugins.engine import applied_orientation, shrink_target

from .conftest import BUCKET, FIXTURES, OTHER_BUCKET
from .test_delivery import JPEG, detect_face, put_bytes, signed_path

SIZE = (5120, 2880)


def request(width=0, height=0, *, meta=False, should_crop=False, filters="", trim=None, fit_in=False, full=False,  # noqa: ANN001, ANN202, E501
            adaptive=False):
    return SimpleNamespace(width=width, height=height, meta=meta, should_crop=should_crop, filters=filters, trim=trim,
                           fit_in=fit_in, full=full, adaptive=adaptive)


@pytest.mark.parametrize("req, expected", [
    (request(300, 200), (534, 300)),          # any orientation: max(W, H) on the shorter side
    (request(320, 320), (569, 320)),
    (request(1280, 0), (2276, 1280)),         # decoded at 1/2: 2560x1440
    (request(1600, 0), None),                 # 1600/2880 > 1/2: no DCT scale applies
    (request(0, 100), (178, 100)),
    (request(0, 0), None),                    # no size
    (request("orig", 100), None),
    (request(300, 200, meta=True), None),     # meta reports the source's size
    (request(300, 200, should_crop=True), None),  # manual crop coordinates are original pixels
    (request(300, 200, filters="focal(10x10:90x90)"), None),
    (request(300, 200, filters="quality(80):proportion(0.5)"), None),
    (request(300, 200, filters="quality(80):format(webp)"), (534, 300)),
    (request(300, 200, trim="top-left"), None),  # trim's tolerance reads pixel edges
    # fit-in: the whole source fits in the box (either way round: EXIF rotation, adaptive-)
    (request(512, 512, fit_in=True), (512, 288)),
    (request(300, 200, fit_in=True), (300, 169)),
    (request(512, 0, fit_in=True), (911, 512)),  # one side: the 512 may fall on the short side
    (request(512, 512, fit_in=True, full=True), (911, 512)),  # full-fit-in fills the box
])
def test_shrink_target(req, expected) -> None:  # noqa: ANN001
    assert shrink_target(req, SIZE) == expected


@pytest.mark.parametrize("req, orientation, expected", [
    # a fill crop of a landscape photo: its cover scale, not max(W, H) on the short side
    (request(512, 320), 1, (569, 320)),       # 1/8: 640x360
    (request(512, 320), 3, (569, 320)),       # upside down: the same sides
    (request(512, 320), 6, (911, 512)),       # turned a quarter: 512 falls on the 2880 side
    (request(512, 320), None, (911, 512)),    # unknown: either way round
    (request(512, 320), 9, (911, 512)),       # not an orientation: unknown
    (request(1280, 0), 1, (1280, 720)),       # 1/4 instead of 1/2
    (request(2000, 0), 1, (2000, 1125)),      # 1/2 (unknown: no DCT scale at all)
    (request(512, 0, fit_in=True), 1, (512, 288)),
    (request(512, 0, fit_in=True), 8, (911, 512)),
    (request(300, 512, fit_in=True), 1, (300, 169)),
    (request(300, 512, fit_in=True, adaptive=True), 1, (512, 288)),  # the box turned to the image's way
    (request(512, 320, fit_in=True, full=True), 1, (569, 320)),
    (request(300, 200, should_crop=True), 1, None),
])
def test_shrink_target_with_a_known_orientation(req, orientation, expected) -> None:  # noqa: ANN001
    assert shrink_target(req, SIZE, orientation) == expected


@pytest.mark.parametrize("respect, tag, expected", [
    (True, 6, 6), (True, 1, 1), (True, None, 1), (True, 0, None), (True, 12, None),
    (False, 6, 1),  # not applied: the source is rendered the way it is stored
])
def test_the_orientation_a_render_applies(respect, tag, expected) -> None:  # noqa: ANN001
    assert applied_orientation(SimpleNamespace(RESPECT_ORIENTATION=respect), tag) == expected


def test_draft_leaves_at_least_the_target() -> None:
    image = Image.new("RGB", SIZE, "gray")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.draft(None, shrink_target(request(300, 200), SIZE))
    decoded.load()
    assert decoded.size == (640, 360)


def big_baseline_jpeg() -> bytes:
    """A 4800x3200 baseline JPEG made from a real portrait (what cameras and phones upload)."""
    portrait = Image.open(FIXTURES / "800px-Guido-portrait-2014.jpg").convert("RGB")
    buffer = io.BytesIO()
    portrait.resize((4800, 3200), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float64)


def psnr(a: bytes, b: bytes) -> float:
    """PSNR of ``a`` against ``b`` resized to ``a``'s size (a full decode goes through Thumbor's
    2560 cap first, and its rounding may differ by a pixel)."""
    x = Image.open(io.BytesIO(a)).convert("RGB")
    y = Image.open(io.BytesIO(b)).convert("RGB")
    assert abs(x.width - y.width) <= 1 and abs(x.height - y.height) <= 1, (x.size, y.size)
    if x.size != y.size:
        y = y.resize(x.size, Image.LANCZOS)
    mse = float(np.mean((np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def pair(thumbor_factory):  # noqa: ANN001, ANN201
    # each its own result storage: neither may serve what the other rendered
    plain = thumbor_factory(IMGSTACK_JPEG_SHRINK_ON_LOAD="false", IMGSTACK_DERIVED_BUCKET=OTHER_BUCKET)
    return thumbor_factory(), plain


@pytest.mark.parametrize("path, same", [
    ("300x200/{image}", False),
    ("fit-in/320x320/{image}", False),
    ("0x150/filters:format(webp)/{image}", False),
    ("1280x0/{image}", False),
    ("100x100:900x900/200x200/{image}", True),   # manual crop: decoded in full either way
    ("2000x0/{image}", False),                  # no EXIF rotation: 2000 of the 4800 wide, 1/2
    ("2600x0/{image}", True),                   # too close to the source for a DCT scale
    ("trim/300x200/{image}", True),             # trim reads pixel edges: decoded in full
])
def test_shrink_on_load_renders_the_same_picture(s3, pair, uid, path, same) -> None:  # noqa: ANN001
    shrinking, full = pair
    key = f"{uid}/camera.jpg"
    put_bytes(s3, key, big_baseline_jpeg())
    path = path.format(image=f"{BUCKET}/{key}")
    a = httpx.get(signed_path(shrinking, path), headers=JPEG, timeout=60)
    b = httpx.get(signed_path(full, path), headers=JPEG, timeout=60)
    assert a.status_code == b.status_code == 200
    quality = psnr(a.content, b.content)
    if same:
        assert quality == float("inf") or quality > 50
    else:
        assert quality != float("inf"), "identical bytes: the reduced decode was not used"
        assert quality > 33, f"{path}: PSNR {quality:.1f} dB between shrink-on-load and a full decode"


def rotated_jpeg(orientation: int) -> bytes:
    """big_baseline_jpeg's picture stored turned, with the EXIF orientation that turns it back."""
    picture = Image.open(io.BytesIO(big_baseline_jpeg()))
    stored = picture.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else picture
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_fill_crop_decodes_at_its_cover_scale_and_renders_the_same_picture(s3, pair, uid, orientation) -> None:  # noqa: ANN001, E501
    """512x320 of a 4800x3200 photo needs 1/8 (600x400) once its orientation is known; stored
    turned (EXIF 6), the 512 falls on its 3200 side, and the same picture comes out.

    Thumbor places the crop on whole pixels of the decoded image: at 1/8 its top edge lands up
    to half a decoded pixel (a third of an output pixel here) from where the full decode puts
    it, which costs this detailed picture a few dB of PSNR (30.3 measured) without a visible
    difference; as bare Pillow's ``draft`` + ``ImageOps.fit`` does."""
    shrinking, full = pair
    key = f"{uid}/turned-{orientation}.jpg"
    put_bytes(s3, key, rotated_jpeg(orientation))
    path = f"512x320/{BUCKET}/{key}"
    a, b = (httpx.get(signed_path(t, path), headers=JPEG, timeout=60) for t in (shrinking, full))
    assert a.status_code == b.status_code == 200
    assert Image.open(io.BytesIO(a.content)).size == (512, 320)
    quality = psnr(a.content, b.content)
    assert quality != float("inf"), "identical bytes: the reduced decode was not used"
    assert quality > 28, f"PSNR {quality:.1f} dB between shrink-on-load and a full decode"


def test_smart_crop_keeps_the_face_with_shrink_on_load(s3, pair, uid) -> None:  # noqa: ANN001
    """Detection runs on the reduced decode; the tall crop must still hold the face."""
    shrinking, _ = pair
    body = big_baseline_jpeg()
    key = f"{uid}/camera.jpg"
    put_bytes(s3, key, body)
    response = httpx.get(signed_path(shrinking, f"150x500/smart/{BUCKET}/{key}"), headers=JPEG, timeout=60)
    assert response.status_code == 200
    crop = decoded(response.content)
    assert crop.shape[:2] == (500, 150)
    # where the crop was taken: slide it over the original scaled to the same height
    scaled = decoded(_jpeg(Image.open(io.BytesIO(body)).convert("RGB").resize((750, 500), Image.LANCZOS)))
    errors = [float(np.mean((scaled[:, left:left + 150] - crop) ** 2)) for left in range(0, 601)]
    left = int(np.argmin(errors)) * 4800 / 750
    x, _, w, _ = detect_face((FIXTURES / "800px-Guido-portrait-2014.jpg").read_bytes())
    centre = (x + w / 2) * 6  # the fixture is 800 wide, the original 4800
    assert left <= centre <= left + 960, (left, centre)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def jpeg_of_size(width: int, height: int) -> bytes:
    portrait = Image.open(FIXTURES / "800px-Guido-portrait-2014.jpg").convert("RGB")
    return _jpeg(portrait.resize((width, height), Image.BICUBIC))


@pytest.mark.parametrize("size, path", [
    ((257, 2560), "32x0"),
    ((601, 2560), "75x0"),
    ((2560, 601), "0x75"),
])
def test_one_sided_sizes_follow_the_originals_proportions(s3, pair, uid, size, path) -> None:  # noqa: ANN001
    """libjpeg rounds reduced sides up (257/8 -> 33): the missing side must not be derived from that."""
    key = f"{uid}/tall.jpg"
    put_bytes(s3, key, jpeg_of_size(*size))
    sizes = []
    for thumbor in pair:
        response = httpx.get(signed_path(thumbor, f"{path}/{BUCKET}/{key}"), headers=JPEG, timeout=60)
        assert response.status_code == 200
        sizes.append(Image.open(io.BytesIO(response.content)).size)
    assert sizes[0] == sizes[1]


def test_a_watermark_is_not_shrunk_with_the_original(s3, pair, uid) -> None:  # noqa: ANN001
    key, mark = f"{uid}/camera.jpg", f"{uid}/mark.jpg"
    put_bytes(s3, key, big_baseline_jpeg())
    put_bytes(s3, mark, jpeg_of_size(800, 533))
    path = f"100x100/filters:watermark({BUCKET}/{mark},0,0,0)/{BUCKET}/{key}"  # 100 of 533: shrinkable
    shrinking, full = (httpx.get(signed_path(t, path), headers=JPEG, timeout=60) for t in pair)
    assert shrinking.status_code == full.status_code == 200
    assert psnr(shrinking.content, full.content) > 33


def test_meta_is_the_same_with_shrink_on_load(s3, pair, uid) -> None:  # noqa: ANN001
    """meta/ decodes in full: its numbers are the original's pixels."""
    key = f"{uid}/camera.jpg"
    put_bytes(s3, key, big_baseline_jpeg())
    path = f"meta/300x200/smart/{BUCKET}/{key}"
    shrinking, full = (httpx.get(signed_path(t, path)).json()["thumbor"] for t in pair)
    assert shrinking == full
