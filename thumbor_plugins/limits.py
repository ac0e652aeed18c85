"""Pixel cap from the image header alone, before any decode (decompression bombs)."""

from __future__ import annotations

import io
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
    #: frames the engine decodes: every frame of an animated GIF (Thumbor's PIL engine keeps them
    #: all, each at the full canvas size), one for everything else (only the first is read)
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


def declared(buffer: bytes) -> Declared | None:
    """The image's declared size, or None when Pillow cannot identify the format (SVG, video...;
    Thumbor's engine then decides). Reads headers only: counting GIF frames skips their data
    without decoding it."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (or raises) on bombs itself; we decide with our own cap instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(buffer)) as image:
                    frames = image.n_frames if image.format == "GIF" else 1
                    return Declared(*image.size, frames=max(1, frames))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # noqa: BLE001 - unknown formats are the engine's to judge
        return None


def check_pixels(buffer: bytes, max_pixels: int) -> Declared | None:
    """Raises :class:`TooManyPixels` when the headers declare more than ``max_pixels`` in all the
    frames the engine would decode."""
    size = declared(buffer)
    if size is not None and max_pixels and size.pixels > max_pixels:
        frames = f" x {size.frames} frames" if size.frames > 1 else ""
        raise TooManyPixels(f"{size.width}x{size.height}{frames} is over the cap of {max_pixels} pixels")
    return size
