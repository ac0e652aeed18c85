"""Thumbor's colour filters and blur on the libvips engine against Thumbor's own, in-process: one
render of a 2560x1920 noise PNG to JPEG through the shipped engine, the filters either ours
(thumbor_plugins.filters: added to the libvips pipeline) or Thumbor's (the image moved to Pillow,
which decodes it, then its C extensions). Reported per chain: the process's CPU time during the
filter phase (what a worker's event loop spends: Thumbor runs filters there) and the wall time of
the whole render (best of --runs), the two taking turns.

Run: scripts/setup test && .venv/bin/python bench/filters.py [--runs 5]
Writes bench/results/filters.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thumbor.config import Config  # noqa: E402
from thumbor.context import Context, RequestParameters  # noqa: E402
from thumbor.importer import Importer  # noqa: E402

import thumbor_plugins.config  # noqa: E402,F401 - our settings
from report import write_report  # noqa: E402
from thumbor_plugins.vips_engine import Engine  # noqa: E402

CHAINS = [
    [],
    ["brightness(10)"],
    ["brightness(10)", "contrast(20)", "rgb(5,0,-5)"],
    ["saturation(1.5)"],
    ["blur(5)"],
]


def _original() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (1920, 2560, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _render(original: bytes, chain: list[str], ours: bool) -> tuple[float, float]:
    config = Config()
    importer = Importer(config)
    importer.import_modules()
    context = Context(config=config, importer=importer)
    engine = Engine(context)
    context.request = RequestParameters(width=2560, height=1920, fit_in=True)
    context.request.engine = engine
    engine.load(original, ".png")
    wall, cpu = time.perf_counter(), time.process_time()
    if not ours:
        engine.use_pil()  # what Thumbor's filters do first (image_data_as_rgb)
    for call in chain:
        name = call.split("(")[0]
        package = "thumbor_plugins.filters" if ours else "thumbor.filters"
        filter_class = importlib.import_module(f"{package}.{name}").Filter
        filter_class.pre_compile()
        step = filter_class(call, context)
        step.engine = engine
        asyncio.run(step.run())
    filters_cpu = time.process_time() - cpu
    engine.read(".jpg", 80)
    return filters_cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    original = _original()
    lines = [
        "# Colour filters and blur: libvips (ours) vs Thumbor's (bench/filters.py)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · one render of a 2560x1920 noise PNG to JPEG,"
        f" in-process, best of {runs}; filter phase: the process's CPU time while the filters run"
        " (on a server: the event loop; Thumbor's includes moving the image to Pillow, which decodes it);"
        " render: wall time of load, filters and encode.",
        "",
        "| filters | filter phase, ours ms | filter phase, Thumbor's ms | render, ours ms | render, Thumbor's ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for chain in CHAINS:
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(runs):
            for ours in (True, False):
                results[ours].append(_render(original, chain, ours))
        best = {ours: (min(r[0] for r in rs), min(r[1] for r in rs)) for ours, rs in results.items()}
        lines.append(
            f"| {':'.join(chain) or '(none)'} | {best[True][0] * 1000:.0f} | {best[False][0] * 1000:.0f}"
            f" | {best[True][1] * 1000:.0f} | {best[False][1] * 1000:.0f} |"
        )
    write_report("filters", lines)


if __name__ == "__main__":
    main()
