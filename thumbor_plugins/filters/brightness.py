"""Thumbor's ``brightness(amount)`` on libvips: ``255 * amount / 100`` added to each colour band."""

from __future__ import annotations

from typing import Any

from thumbor.filters import BaseFilter, brightness, filter_method

from . import adjust_color, on_vips, percent_of_255


class Filter(brightness.Filter):
    @filter_method(BaseFilter.Number)
    async def brightness(self, value: int) -> None:
        engine: Any = self.engine
        if on_vips(engine):
            delta = percent_of_255(value)
            engine.look_up_colours([[adjust_color(v + delta) for v in range(256)]] * 3)
            return
        await brightness.Filter.brightness(self, value)
