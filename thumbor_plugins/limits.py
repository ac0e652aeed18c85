"""Caps checked from the image's headers alone, before any decode (decompression bombs).

Three limits, all answered 422 (:class:`TooManyPixels`):

- **pixels served** (``IMGSTACK_MAX_PIXELS``): width x height x frames as the header declares;
- **decode memory** (``IMGSTACK_MAX_DECODE_MEMORY``): what the engine will hold while decoding.
  Baseline JPEG and non-interlaced PNG are read top to bottom by the libvips engine and streamed
  through a downscale to the size cap, so they hold the capped image and a few rows, however
  large; every other format (progressive JPEG and interlaced PNG included: their decoders need the
  whole image) holds every decoded pixel;
- **plausibility** (``IMGSTACK_MAX_DECOMPRESSION_RATIO``): a streamed original whose declared
  pixels are out of all proportion to its bytes (a bomb, a truncated file) is refused rather than
  spending seconds of CPU on it.

Still images: width x height as the header declares. Animated GIFs: Thumbor's PIL engine keeps
every frame, each on a canvas as large as the logical screen *or the largest frame* (Pillow widens
the canvas for a frame that overflows it), so the cost is that canvas times the number of frames;
GIF block structure is read here directly, skipping the image data, because Pillow counts frames
without their sizes, and its frame count gives up on damage that its decoder reads past.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, Union

from PIL import Image


class TooManyPixels(ValueError):
    status = 422


MIB = 1024 * 1024
#: rows of the original a streamed decode holds besides its output: a base, and more per libvips
#: thread (each works on its own strip, through the shrink's window). Fitted above the peak memory
#: measured streaming 16000x12000 and 20000x15000 JPEG and PNG originals at 1 to 8 threads.
_STREAM_ROWS_BASE = 1100
_STREAM_ROWS_PER_THREAD = 600


@dataclass(frozen=True)
class Declared:
    """What an image's headers say it will decode to."""

    width: int
    height: int
    #: frames the engine decodes: every frame of an animated GIF, one for everything else (only
    #: the first frame of other formats is read)
    frames: int = 1
    #: decoded bytes per pixel (bands x bytes per band) and whether the format can be decoded top
    #: to bottom in strips; how it decodes, not what it is (left out of comparisons)
    bytes_per_pixel: int = field(default=4, compare=False)
    streamable: bool = field(default=False, compare=False)
    #: the decoded colour mode, as Pillow names it ("" when not read)
    mode: str = field(default="", compare=False)

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames

    @property
    def decoded_bytes(self) -> int:
        """Every decoded pixel of every frame, held at once."""
        return self.pixels * self.bytes_per_pixel


@dataclass(frozen=True)
class Limits:
    """The caps of :func:`check` (0: no cap)."""

    max_pixels: int = 500_000_000
    max_frames: int = 1000
    max_decode_bytes: int = 320 * MIB
    max_ratio: float = 250
    #: the size cap streamed decodes are downscaled to (MAX_WIDTH, MAX_HEIGHT); None when the
    #: engine cannot stream (Thumbor's PIL engine): every decode then holds every pixel
    stream_to: tuple[int, int] | None = (2560, 2560)
    #: libvips threads per render (IMGSTACK_VIPS_CONCURRENCY)
    threads: int = 2


def decode_bytes(size: Declared, limits: Limits) -> int:
    """Estimated peak bytes the engine holds to decode ``size``."""
    if limits.stream_to is None or not size.streamable or size.frames != 1 or not all(limits.stream_to):
        return size.decoded_bytes  # held whole (no downscale to a cap on both sides comes first)
    cap_w, cap_h = limits.stream_to
    scale = min(1.0, cap_w / size.width, cap_h / size.height)
    rows = _STREAM_ROWS_BASE + _STREAM_ROWS_PER_THREAD * max(1, limits.threads)
    held = round(size.width * scale) * round(size.height * scale) + size.width * rows
    return min(size.decoded_bytes, held * size.bytes_per_pixel)


def gif_extent(buffer: bytes) -> Declared | None:
    """Canvas (the logical screen grown to cover every frame) and frame count of a GIF, from its
    blocks; None when ``buffer`` is no GIF. Read as Pillow's decoder reads: stray bytes between
    blocks are skipped, a truncated stream counts the frames before the cut."""
    if buffer[:6] not in (b"GIF87a", b"GIF89a") or len(buffer) < 13:
        return None
    width, height, flags = struct.unpack_from("<HHB", buffer, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0

    def skip_sub_blocks(at: int) -> int:
        while at < len(buffer) and buffer[at]:
            at += buffer[at] + 1
        return at + 1

    while pos < len(buffer):
        block = buffer[pos]
        if block == 0x2C:  # image descriptor
            if pos + 10 > len(buffer):
                break
            left, top, w, h, local = struct.unpack_from("<HHHHB", buffer, pos + 1)
            frames += 1
            width, height = max(width, left + w), max(height, top + h)
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the data
        elif block == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x3B:  # trailer
            break
        else:  # a stray byte: Pillow's decoder skips it and reads on, so do we
            pos += 1
    return Declared(width, height, max(1, frames))


#: PNG colour type -> channels (grey, RGB, palette (expanded to RGB), grey+alpha, RGBA)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
#: Pillow mode -> decoded bytes per pixel, where its bands alone do not say it
_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4, "P": 4, "PA": 4, "1": 1}


def _png(head: bytes) -> Declared | None:
    """From the IHDR chunk: Pillow reports 16-bit colour PNGs as 8-bit RGB, libvips keeps 16."""
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 29:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", head, 16)
    if not (width and height):
        return None  # invalid: the engine's to refuse
    alpha = colour in (4, 6) or (colour in (0, 2, 3) and b"tRNS" in head)
    channels = _PNG_CHANNELS.get(colour, 4) + (1 if colour in (0, 2, 3) and b"tRNS" in head else 0)
    mode = ("LA" if alpha else "L") if colour in (0, 4) else ("RGBA" if alpha else "RGB")
    return Declared(width, height, 1, channels * (2 if depth == 16 else 1), streamable=interlace == 0,
                    mode=mode if depth <= 8 else "I;16" if colour == 0 else "RGB16")


#: an image's bytes: in memory, a spooled file's map (:class:`thumbor_plugins.spool.Spooled`),
#: or a file's path
Source = Union[bytes, mmap.mmap, "os.PathLike[str]", str]


def _read_head(source: Source, size: int) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return file.read(size)
    return bytes(source[:size])


def declared(source: Source) -> Declared | None:
    """The image's declared size, or None when Pillow cannot identify the format (SVG, video...;
    Thumbor's engine then decides). Reads headers only."""
    head = _read_head(source, 64 * 1024)
    png = _png(head)
    if png is not None:
        return png
    if head[:3] == b"GIF":  # frames are counted over the whole file
        gif = gif_extent(source if isinstance(source, bytes) else _read_head(source, 1 << 62))
        if gif is not None:
            return gif
    try:
        with warnings.catch_warnings():
            # Pillow warns (or raises) on bombs itself; we decide with our own cap instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                # a map is read as a file (from the start): only the header pages are touched
                opened: Any = io.BytesIO(source) if isinstance(source, bytes) else source
                if isinstance(opened, mmap.mmap):
                    opened.seek(0)
                with Image.open(opened) as image:
                    frames = getattr(image, "n_frames", 1) if image.format == "WEBP" else 1
                    per_pixel = _MODE_BYTES.get(image.mode, len(image.getbands()))
                    if not (image.size[0] and image.size[1]):
                        return None
                    # baseline greyscale or RGB only: the libvips engine hands CMYK to Pillow
                    baseline = image.format == "JPEG" and not image.info.get("progressive")
                    if image.format == "JPEG" and not baseline:
                        per_pixel *= 2  # a progressive decode holds every 16-bit coefficient
                    return Declared(*image.size, frames, per_pixel, streamable=baseline and image.mode in ("L", "RGB"),
                                    mode=image.mode)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # noqa: BLE001 - unknown formats are the engine's to judge
        return None


def check(source: Source, limits: Limits, length: int | None = None) -> Declared | None:
    """Raises :class:`TooManyPixels` when ``source`` (``length``: its size in bytes, when it is
    only the first bytes of the image) is over one of ``limits``; returns what its header declares (None: unknown
    format, the engine's to judge)."""
    size = declared(source)
    if size is None:
        return None
    if limits.max_frames and size.frames > limits.max_frames:
        raise TooManyPixels(f"{size.frames} frames is over the cap of {limits.max_frames} frames")
    frames = f" x {size.frames} frames" if size.frames > 1 else ""
    if limits.max_pixels and size.pixels > limits.max_pixels:
        raise TooManyPixels(f"{size.width}x{size.height}{frames} is over the cap of {limits.max_pixels} pixels")
    memory = decode_bytes(size, limits)
    if limits.max_decode_bytes and memory > limits.max_decode_bytes:
        raise TooManyPixels(
            f"{size.width}x{size.height}{frames} needs {memory // MIB} MiB to decode, over the cap of "
            f"{limits.max_decode_bytes // MIB} MiB"
        )
    if length is None:
        length = os.path.getsize(source) if isinstance(source, (str, os.PathLike)) else len(source)
    streamed = limits.max_decode_bytes and size.decoded_bytes > limits.max_decode_bytes
    if streamed and limits.max_ratio and size.decoded_bytes > limits.max_ratio * max(1, length):
        raise TooManyPixels(
            f"{size.width}x{size.height} declares {size.decoded_bytes // MIB} MiB of pixels in "
            f"{length // 1024} KiB: no real image compresses that much"
        )
    return size


def check_pixels(buffer: bytes, max_pixels: int, max_frames: int = 0) -> Declared | None:
    """:func:`check` with only the pixel and frame caps (0: no frame cap)."""
    return check(buffer, Limits(max_pixels=max_pixels, max_frames=max_frames, max_decode_bytes=0, max_ratio=0))
