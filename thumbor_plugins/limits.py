"""Pixel cap from the image header alone, before any decode (decompression bombs)."""

from __future__ import annotations

import io
import warnings

from PIL import Image


class TooManyPixels(ValueError):
    status = 422


def declared_size(buffer: bytes) -> tuple[int, int] | None:
    """Width and height the header declares, or None when Pillow cannot identify the format
    (SVG, video...; Thumbor's engine then decides). Reads the header only: nothing is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (or raises) on bombs itself; we decide with our own cap instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(buffer)) as image:
                    return image.size
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # noqa: BLE001 - unknown formats are the engine's to judge
        return None


def check_pixels(buffer: bytes, max_pixels: int) -> tuple[int, int] | None:
    """Raises :class:`TooManyPixels` when the header declares more than ``max_pixels``."""
    size = declared_size(buffer)
    if size is not None and max_pixels and size[0] * size[1] > max_pixels:
        raise TooManyPixels(f"{size[0]}x{size[1]} is over the cap of {max_pixels} pixels")
    return size
