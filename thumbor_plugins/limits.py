"""Pixel cap from the image's headers alone, before any decode (decompression bombs).

Still images: width x height as the header declares. Animated GIFs: Thumbor's PIL engine keeps
every frame, each on a canvas as large as the logical screen *or the largest frame* (Pillow widens
the canvas for a frame that overflows it), so the cost is that canvas times the number of frames;
GIF block structure is read here directly, skipping the image data, because Pillow counts frames
without their sizes, and its frame count gives up on damage that its decoder reads past.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image


class TooManyPixels(ValueError):
    status = 422


@dataclass(frozen=True)
class Declared:
    """What an image's headers say it will decode to."""

    width: int
    height: int
    #: frames the engine decodes: every frame of an animated GIF, one for everything else (only
    #: the first frame of other formats is read)
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


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


def declared(buffer: bytes) -> Declared | None:
    """The image's declared size, or None when Pillow cannot identify the format (SVG, video...;
    Thumbor's engine then decides). Reads headers only."""
    gif = gif_extent(buffer)
    if gif is not None:
        return gif
    try:
        with warnings.catch_warnings():
            # Pillow warns (or raises) on bombs itself; we decide with our own cap instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(buffer)) as image:
                    return Declared(*image.size)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # noqa: BLE001 - unknown formats are the engine's to judge
        return None


def check_pixels(buffer: bytes, max_pixels: int, max_frames: int = 0) -> Declared | None:
    """Raises :class:`TooManyPixels` when the headers declare more than ``max_pixels`` in all the
    frames the engine would decode, or more than ``max_frames`` frames (0: no frame cap)."""
    size = declared(buffer)
    if size is None:
        return None
    if max_frames and size.frames > max_frames:
        raise TooManyPixels(f"{size.frames} frames is over the cap of {max_frames} frames")
    if max_pixels and size.pixels > max_pixels:
        frames = f" x {size.frames} frames" if size.frames > 1 else ""
        raise TooManyPixels(f"{size.width}x{size.height}{frames} is over the cap of {max_pixels} pixels")
    return size
