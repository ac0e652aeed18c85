"""The pixel cap reads headers only and counts what the engine would decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from thumbor_plugins import limits

from .test_delivery import animated_gif_bomb, gif_bomb, png_bomb, raw_gif


def encoded(image: Image.Image, fmt: str, **options) -> bytes:  # noqa: ANN003
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_still_image_is_width_times_height() -> None:
    size = limits.check_pixels(encoded(Image.new("RGB", (640, 480)), "PNG"), 640 * 480)
    assert size == limits.Declared(640, 480, 1)


def test_small_animated_gif_counts_every_frame_and_passes() -> None:
    frames = [Image.new("RGB", (100, 80), (i * 50, 0, 0)) for i in range(5)]
    body = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert limits.check_pixels(body, 75_000_000) == limits.Declared(100, 80, 5)


def test_should_refuse_animated_gif_whose_frames_add_up_over_the_cap() -> None:
    body = animated_gif_bomb(3000, 3000, 12)
    assert limits.check_pixels(body, 200_000_000).pixels == 108_000_000
    with pytest.raises(limits.TooManyPixels, match="12 frames"):
        limits.check_pixels(body, 75_000_000)


@pytest.mark.parametrize("body", [png_bomb(12000, 12000), gif_bomb()], ids=["png", "gif"])
def test_should_refuse_bomb_from_its_header(body: bytes) -> None:
    with pytest.raises(limits.TooManyPixels):
        limits.check_pixels(body, 75_000_000)


def test_unknown_formats_are_left_to_the_engine() -> None:
    assert limits.check_pixels(b"<svg xmlns='http://www.w3.org/2000/svg'/>", 1) is None


def test_should_refuse_a_gif_whose_frames_overflow_a_tiny_canvas() -> None:
    """Pillow grows the canvas to the largest frame: 12 frames of 8000x8000 on a 1x1 screen."""
    body = raw_gif((1, 1), [(0, 0, 1, 1)] + [(0, 0, 8000, 8000)] * 11)
    assert limits.declared(body) == limits.Declared(8000, 8000, 12)
    with pytest.raises(limits.TooManyPixels):
        limits.check_pixels(body, 75_000_000)


def test_should_refuse_a_gif_bomb_with_a_damaged_tail() -> None:
    """Frames up to the damage still decode: they count, the damage does not hide them."""
    body = raw_gif((8000, 8000), [(0, 0, 1, 1)] * 12, tail=b"\x99garbage")
    assert limits.declared(body) == limits.Declared(8000, 8000, 12)
    truncated = raw_gif((8000, 8000), [(0, 0, 1, 1)] * 12)[:-3]  # inside the last frame's data
    assert limits.declared(truncated).frames == 12
    with pytest.raises(limits.TooManyPixels):
        limits.check_pixels(body, 75_000_000)


def test_should_refuse_a_gif_bomb_hiding_frames_behind_a_stray_byte() -> None:
    """Pillow's decoder skips bytes that start no block and reads the frames after them."""
    body = raw_gif((8000, 8000), [(0, 0, 1, 1)], tail=b"") + b"\x00" + raw_gif((1, 1), [(0, 0, 1, 1)] * 11)[19:]
    assert limits.declared(body) == limits.Declared(8000, 8000, 12)
    with pytest.raises(limits.TooManyPixels):
        limits.check_pixels(body, 75_000_000)


def test_should_refuse_a_gif_with_too_many_tiny_frames() -> None:
    body = raw_gif((1, 1), [(0, 0, 1, 1)] * 1001)
    assert limits.check_pixels(body, 75_000_000) is not None  # few pixels...
    with pytest.raises(limits.TooManyPixels, match="1001 frames"):
        limits.check_pixels(body, 75_000_000, max_frames=1000)  # ...but too many frames


def test_block_reader_agrees_with_pillow_on_a_real_animated_gif() -> None:
    frames = [Image.new("RGB", (120, 90), (i * 40, 255 - i * 40, 0)) for i in range(6)]
    body = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    with Image.open(io.BytesIO(body)) as image:
        assert limits.declared(body) == limits.Declared(*image.size, image.n_frames)


# --- decode memory and plausibility (separate from the pixels served) ------------------------------

def _png_header(width: int, height: int, *, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    """The signature and IHDR of a PNG: all the header check reads."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def test_a_baseline_jpeg_streams_and_holds_only_the_capped_image() -> None:
    import pyvips

    body = pyvips.Image.black(12000, 10000, bands=3).jpegsave_buffer()
    size = limits.declared(body)
    assert (size.width, size.height, size.bytes_per_pixel, size.streamable) == (12000, 10000, 3, True)
    held = limits.decode_bytes(size, limits.Limits())
    assert held < 100 * limits.MIB  # 2560x2133 RGB and the rows the threads work on, not 360 MB
    assert limits.decode_bytes(size, limits.Limits(threads=8)) > held  # each thread holds rows
    assert limits.decode_bytes(size, limits.Limits(stream_to=None)) == 12000 * 10000 * 3


def test_should_refuse_a_progressive_jpeg_whose_whole_decode_is_over_the_memory_cap() -> None:
    import pyvips

    body = pyvips.Image.black(12000, 10000, bands=3).jpegsave_buffer(interlace=True)
    size = limits.declared(body)
    assert not size.streamable and size.bytes_per_pixel == 6  # 16-bit coefficients, every scan
    with pytest.raises(limits.TooManyPixels, match="MiB to decode"):
        limits.check(body, limits.Limits(max_ratio=0))


@pytest.mark.parametrize(("header", "per_pixel", "streamable"), [
    (_png_header(16000, 12000), 3, True),
    (_png_header(16000, 12000, depth=16, colour=6), 8, True),
    (_png_header(16000, 12000, interlace=1), 3, False),
    (_png_header(16000, 12000, colour=0), 1, True),
], ids=["rgb", "rgba-16", "interlaced", "grey"])
def test_png_decode_memory_comes_from_its_ihdr(header: bytes, per_pixel: int, streamable: bool) -> None:
    size = limits.declared(header)
    assert (size.width, size.height, size.bytes_per_pixel, size.streamable) == (16000, 12000, per_pixel, streamable)
    caps = limits.Limits(max_ratio=0)
    if streamable:
        assert limits.check(header, caps, length=300 * limits.MIB) == size  # 300 MP, served
    else:
        with pytest.raises(limits.TooManyPixels, match="MiB to decode"):
            limits.check(header, caps, length=300 * limits.MIB)


def test_should_refuse_more_pixels_than_served_even_when_they_would_stream() -> None:
    with pytest.raises(limits.TooManyPixels, match="over the cap of 500000000 pixels"):
        limits.check(_png_header(30000, 20000), limits.Limits(), length=600 * limits.MIB)


def test_should_refuse_a_streamed_original_whose_pixels_are_out_of_all_proportion_to_its_bytes() -> None:
    header = _png_header(20000, 15000)  # 900 MB of pixels
    assert limits.check(header, limits.Limits(), length=100 * limits.MIB)  # 9:1, a real image
    with pytest.raises(limits.TooManyPixels, match="no real image compresses that much"):
        limits.check(header, limits.Limits(), length=2 * limits.MIB)  # 450:1
    # held whole (within the memory cap) the ratio does not matter: a small flat image is fine
    assert limits.check(_png_header(4000, 3000), limits.Limits(), length=40 * 1024)


def test_should_not_read_a_png_with_an_empty_side() -> None:
    """An IHDR of width 0 used to divide by zero in the estimate (a 500 instead of the engine's
    refusal)."""
    assert limits.declared(_png_header(0, 5000)) is None
    assert limits.check(_png_header(20000, 0), limits.Limits(), length=1000) is None


def test_only_a_cap_on_both_sides_bounds_a_streamed_decode() -> None:
    """Thumbor leaves a portrait alone when only MAX_WIDTH is set: it is held whole."""
    size = limits.declared(_png_header(12000, 16000))
    assert limits.decode_bytes(size, limits.Limits(stream_to=(2560, 0))) == size.decoded_bytes
    assert limits.decode_bytes(size, limits.Limits(stream_to=(2560, 2560))) < size.decoded_bytes // 4


def test_a_cmyk_jpeg_is_held_whole() -> None:
    """The libvips engine hands CMYK JPEGs to Pillow, which decodes them whole."""
    import pyvips

    body = pyvips.Image.black(200, 100, bands=4).copy(interpretation="cmyk").jpegsave_buffer()
    size = limits.declared(body)
    assert size.mode == "CMYK" and not size.streamable
