"""Thumbor's pixel filters computed by libvips, with the render, in the engine's threads.

Thumbor runs a request's filters on the event loop, and its pixel filters copy the image into
Pillow and walk it in C extensions that hold the GIL: while one worker blurred or brightened a
large photo, nothing else it serves was answered, ``/healthcheck`` included (docs/decisions.md).
Each module here is one of Thumbor's filters with the same name, arguments and pixels (its
``Filter`` subclasses Thumbor's), which on the libvips engine (:mod:`thumbor_plugins.vips_engine`)
adds its step to the image's pipeline instead: nothing is computed on the event loop, and a
streamed decode stays streamed. On an image in Pillow (a GIF, another engine, after a step that
needed Pillow) each is Thumbor's own. ``grayscale`` needs no module: Thumbor's calls the engine's
``convert_to_grayscale``, which the libvips engine does lazily.

The shipped ``FILTERS`` is :func:`shipped_filters`: Thumbor's built-in list with these in place
of Thumbor's. Thumbor's other pixel filters (sharpen, noise, equalize, colorize, curve,
round_corner, convolution, ...) are still Thumbor's.
"""

from __future__ import annotations

from typing import Any

from thumbor.filters import BUILTIN_FILTERS

#: Thumbor's filter module -> ours (same filter name and arguments)
REPLACED = {
    f"thumbor.filters.{name}": f"thumbor_plugins.filters.{name}"
    for name in ("blur", "brightness", "contrast", "rgb", "saturation")
}

__all__ = ["REPLACED", "adjust_color", "c_divide", "on_vips", "percent_of_255", "shipped_filters"]


def shipped_filters() -> list[str]:
    """Thumbor's own filters, ours in place of the ones in :data:`REPLACED` (the shipped ``FILTERS``)."""
    return [REPLACED.get(name, name) for name in BUILTIN_FILTERS]


def on_vips(engine: Any) -> bool:
    """The engine holds a libvips image: our step goes into its pipeline."""
    return bool(getattr(engine, "on_vips", False))


def c_divide(dividend: int, divisor: int) -> int:
    """C's integer division (truncated toward zero; Python's ``//`` floors)."""
    quotient = abs(dividend) // abs(divisor)
    return quotient if (dividend >= 0) == (divisor > 0) else -quotient


def percent_of_255(value: int) -> int:
    """``(255 * value) / 100`` in C, as Thumbor's brightness and rgb filters compute a delta."""
    return c_divide(255 * value, 100)


def adjust_color(value: int) -> int:
    """Thumbor's ``ADJUST_COLOR``: clipped to 0..255."""
    return max(0, min(255, value))
