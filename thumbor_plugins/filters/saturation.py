"""Thumbor's ``saturation(change)`` on libvips: each colour moved away from (or toward) the
pixel's perceived brightness ``sqrt(0.299 r² + 0.587 g² + 0.114 b²)`` by ``change``."""

from __future__ import annotations

from typing import Any

from thumbor.filters import BaseFilter, filter_method, saturation

from . import on_vips


def _saturated(rgb: Any, change: float) -> Any:
    # Thumbor's C: the brightness in double, kept as a float; the rest in float. (x * x, not
    # x ** 2: libvips' pow took twice the time of the whole step)
    wide = rgb.cast("double")
    brightness = ((wide * wide).recomb([[0.299, 0.587, 0.114]]) ** 0.5).cast("float")
    return brightness + (rgb - brightness) * change


class Filter(saturation.Filter):
    @filter_method(BaseFilter.DecimalNumber)
    async def saturation(self, change: float) -> None:
        engine: Any = self.engine
        if on_vips(engine):
            engine.map_colours(lambda rgb: _saturated(rgb, change))
            return
        await saturation.Filter.saturation(self, change)
