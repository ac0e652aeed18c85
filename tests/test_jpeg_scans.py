"""thumbor_plugins.jpeg_scans: a progressive JPEG without the scans a decode at 1/8 does not read
decodes to the very same pixels at 1/8 (libvips' shrink=8, as the engine asks), across the ways
encoders write progressive JPEGs; anything else is left alone."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import pyvips
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from thumbor.context import RequestParameters

from thumbor_plugins import jpeg_scans
from thumbor_plugins.jpeg_scans import MAX_SEGMENTS, for_eighth_scale
from thumbor_plugins.vips_engine import Engine

from .conftest import FIXTURES
from .test_vips_engine import make_context


def photo(width: int, height: int) -> Image.Image:
    """A real portrait at that size, with fine noise on top so that every block has AC detail."""
    portrait = Image.open(FIXTURES / "800px-Guido-portrait-2014.jpg").convert("RGB").resize((width, height))
    noise = np.random.default_rng(7).integers(-12, 13, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(portrait, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


def pillow_jpeg(width: int, height: int, mode: str = "RGB", **options) -> bytes:  # noqa: ANN003
    buffer = io.BytesIO()
    photo(width, height).convert(mode).save(buffer, "JPEG", quality=88, progressive=True, **options)
    return buffer.getvalue()


def vips_jpeg(width: int, height: int, **options) -> bytes:  # noqa: ANN003
    image = pyvips.Image.new_from_array(np.asarray(photo(width, height)))
    return image.jpegsave_buffer(Q=88, interlace=True, **options)


def at_eighth(data: bytes) -> np.ndarray:
    image = pyvips.Image.new_from_buffer(data, "", shrink=8)
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


CASES = {
    "4:4:4": lambda: pillow_jpeg(1600, 1000, subsampling=0),
    "4:2:2": lambda: pillow_jpeg(1600, 1000, subsampling=1),
    "4:2:0": lambda: pillow_jpeg(1600, 1000, subsampling=2),
    "grayscale": lambda: pillow_jpeg(1600, 1000, "L"),
    "CMYK": lambda: pillow_jpeg(1600, 1000, "CMYK"),
    "odd size, 4:2:0": lambda: pillow_jpeg(1001, 777, subsampling=2),
    "odd size, 4:4:4": lambda: pillow_jpeg(203, 99, subsampling=0),
    "smaller than two blocks": lambda: pillow_jpeg(15, 9, subsampling=2),
    "libvips": lambda: vips_jpeg(1600, 1000),
    "restart intervals": lambda: vips_jpeg(1600, 1000, restart_interval=3),
    "restart intervals, 4:4:4": lambda: vips_jpeg(1001, 777, restart_interval=1, subsample_mode="off"),
    "mozjpeg scan optimisation": lambda: vips_jpeg(1600, 1000, optimize_scans=True, trellis_quant=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_progressive_jpeg_without_its_skipped_scans_decodes_to_the_same_pixels_at_one_eighth(case) -> None:  # noqa: ANN001
    try:
        original = CASES[case]()
    except pyvips.Error as error:  # a libvips built without mozjpeg has no scan optimisation
        pytest.skip(f"this libvips cannot write it: {error}")
    fewer = for_eighth_scale(original)
    assert fewer is not None
    assert len(fewer) < len(original)
    assert np.array_equal(at_eighth(fewer), at_eighth(original))


def test_most_of_a_photos_bytes_are_skipped() -> None:
    original = pillow_jpeg(1600, 1000, subsampling=0)
    assert len(for_eighth_scale(original)) < len(original) / 4


def test_metadata_segments_are_kept() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = pillow_jpeg(800, 600, exif=exif.tobytes(), icc_profile=icc)
    fewer = pyvips.Image.new_from_buffer(for_eighth_scale(original), "", shrink=8)
    assert fewer.get("orientation") == 6
    assert fewer.get("icc-profile-data") == icc


def baseline() -> bytes:
    buffer = io.BytesIO()
    photo(800, 600).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def with_frame_byte(data: bytes, offset: int, value: int) -> bytes:
    """``data`` with a byte of its SOF2 segment (offset from the marker) changed."""
    at = data.index(b"\xff\xc2")
    return data[:at + offset] + bytes([value]) + data[at + offset + 1:]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("make", [
    pytest.param(baseline, id="baseline: AC and DC in one scan"),
    pytest.param(lambda: with_frame_byte(pillow_jpeg(320, 240), 1, 0xCA), id="arithmetic coding"),
    pytest.param(lambda: with_frame_byte(pillow_jpeg(320, 240), 4, 12), id="12-bit samples"),
    pytest.param(lambda: pillow_jpeg(320, 240)[: 320 * 240 // 40], id="cut short in a scan"),
    pytest.param(lambda: pillow_jpeg(320, 240)[:-2], id="no end of image"),
    pytest.param(png, id="PNG"),
    pytest.param(lambda: b"", id="empty"),
    pytest.param(lambda: b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x01\x3f\x00\x00\xff\xd9", id="a scan before the frame"),
])
def test_anything_else_is_left_alone(make) -> None:  # noqa: ANN001
    assert for_eighth_scale(make()) is None


def test_should_give_up_on_a_jpeg_of_endless_segments_without_walking_them_all() -> None:
    """Millions of 4-byte comment segments would hold the event loop for seconds in a walk in
    Python: the walk stops after MAX_SEGMENTS, even when a real progressive JPEG follows them."""
    progressive = pillow_jpeg(320, 240)
    assert for_eighth_scale(progressive) is not None
    comments = b"\xff\xfe\x00\x02" * MAX_SEGMENTS
    assert for_eighth_scale(progressive[:2] + comments + progressive[2:]) is None
    assert for_eighth_scale(b"\xff\xd8" + b"\xff\xfe\x00\x02" * 2_000_000 + b"\xff\xd9") is None
    assert MAX_SEGMENTS <= 1000


def test_a_segment_length_past_the_end_is_refused() -> None:
    original = pillow_jpeg(320, 240)
    at = original.index(b"\xff\xdb")  # the first quantisation table
    broken = original[:at + 2] + struct.pack(">H", 0xFFFF) + original[at + 4:]
    assert for_eighth_scale(broken) is None


SMALL = pillow_jpeg(96, 64, subsampling=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_files_give_bytes_or_none_and_never_raise(changes) -> None:  # noqa: ANN001
    data = bytearray(SMALL)
    for index, value in changes:
        data[index] = value
    result = for_eighth_scale(bytes(data))
    assert result is None or result.startswith(b"\xff\xd8") and result.endswith(b"\xff\xd9")


def engine_for(original: bytes, width: int, **settings) -> Engine:  # noqa: ANN003
    context = make_context(**settings)
    engine = Engine(context)
    context.request = RequestParameters(width=width, height=0)
    context.request.engine = engine
    engine.load(original, ".jpg")
    return engine


@pytest.mark.parametrize("width, decoded, cut", [
    (400, (500, 300), True),     # 1/8: from fewer scans
    (900, (1000, 600), False),   # 1/4 reads AC coefficients: every scan
])
def test_the_engine_decodes_from_fewer_scans_at_one_eighth_only(monkeypatch, width, decoded, cut) -> None:  # noqa: ANN001
    original = pillow_jpeg(4000, 2400, subsampling=2)
    results = []

    def spy(data: bytes) -> bytes | None:
        results.append(for_eighth_scale(data))  # the function itself: only the module's name is patched
        return results[-1]

    monkeypatch.setattr(jpeg_scans, "for_eighth_scale", spy)
    engine = engine_for(original, width)
    assert engine.size == decoded
    assert [r is not None for r in results] == ([True] if cut else [])
    every_scan = engine_for(original, width, IMGSTACK_JPEG_SKIP_SCANS=False)
    assert len(results) == (1 if cut else 0)
    assert np.array_equal(engine.image.numpy(), every_scan.image.numpy())
