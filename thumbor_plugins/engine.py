"""Thumbor's PIL engine with shrink-on-load for JPEG: ``ENGINE = 'thumbor_plugins.engine'``.

Thumbor asks libjpeg for a reduced decode (``Image.draft``) only when it resizes, after the
image has been cropped, rotated or examined, i.e. already decoded at full size. This engine asks
before anything is decoded, for the smallest DCT scale (1/2, 1/4, 1/8) that still leaves at least
the output size in both dimensions, whatever the orientation. Everything Thumbor computes next
(crop, focal points, resize) is relative to the engine's size, so the result is the same picture.

Left at full size: requests whose numbers are in original pixels (a manual crop, ``focal()``,
``extract_focal()``), whose output is a fraction of the source (``proportion()``), ``meta``
(reports the source's size), ``orig`` sizes, and non-JPEG formats.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image
from thumbor.engines.pil import Engine as PilEngine

#: filters whose arguments or results are in the original's pixels
_SOURCE_PIXEL_FILTERS = ("focal(", "extract_focal(", "proportion(")


def shrink_target(request: Any, size: tuple[int, int]) -> tuple[int, int] | None:
    """The smallest decode size that still serves ``request``, or None to decode in full."""
    if request is None or request.meta or getattr(request, "should_crop", False):
        return None
    if any(name in (request.filters or "") for name in _SOURCE_PIXEL_FILTERS):
        return None
    wanted = [d for d in (request.width, request.height) if isinstance(d, int) and d > 0]
    if not wanted or len(wanted) < sum(1 for d in (request.width, request.height) if d):
        return None  # no size, or an "orig"
    # the output never needs more than max(W, H) on the source's shorter side (crop, fit-in,
    # stretch, rotated by EXIF or not)
    scale = max(wanted) / min(size)
    if scale > 0.5:
        return None  # no DCT scale would apply
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


class Engine(PilEngine):
    def create_image(self, buffer: bytes) -> Any:
        image = super().create_image(buffer)
        if (
            isinstance(image, Image.Image)
            and image.format == "JPEG"
            and self.context.config.IMGSTACK_JPEG_SHRINK_ON_LOAD
        ):
            target = shrink_target(getattr(self.context, "request", None), image.size)
            if target is not None:
                image.draft(None, target)
        return image
