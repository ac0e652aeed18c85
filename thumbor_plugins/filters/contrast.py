"""Thumbor's ``contrast(amount)`` on libvips: each colour band stretched around 128 by
``(amount + 100)² / 100`` percent, in Thumbor's integer arithmetic."""

from __future__ import annotations

from typing import Any

from thumbor.filters import BaseFilter, contrast, filter_method

from . import adjust_color, c_divide, on_vips


class Filter(contrast.Filter):
    @filter_method(BaseFilter.Number)
    async def contrast(self, value: int) -> None:
        engine: Any = self.engine
        if on_vips(engine):
            factor = c_divide((value + 100) ** 2, 100)
            table = [adjust_color(c_divide(factor * (v - 128), 100) + 128) for v in range(256)]
            engine.look_up_colours([table] * 3)
            return
        await contrast.Filter.contrast(self, value)
