"""AVIF encoder effort: time and bytes per image at each libvips effort (IMGSTACK_AVIF_EFFORT).

Reproduce: ``.venv/bin/python bench/avif_effort.py`` after ``bench/compare.py`` has fetched its
corpus (.cache/bench/corpus): four 5120x2880 wallpapers and two portraits, thumbnailed to 480 px
(the size a page shows), encoded at AVIF_QUALITY 70 in this process, one core.
"""

from __future__ import annotations

import glob
import statistics
import time
from pathlib import Path

import pyvips

CORPUS = Path(__file__).resolve().parents[1] / ".cache" / "bench" / "corpus"


def main() -> None:
    pyvips.cache_set_max(0)
    paths = sorted(glob.glob(str(CORPUS / "jpeg" / "*")))[:4] + sorted(glob.glob(str(CORPUS / "portrait" / "*")))[:2]
    if not paths:
        raise SystemExit(f"no corpus in {CORPUS}: run bench/compare.py --quick first")
    images = [pyvips.Image.thumbnail(path, 480).copy_memory() for path in paths]
    print("| effort | ms per image (median of 3) | bytes per image |")
    print("|---:|---:|---:|")
    for effort in range(6):
        runs, size = [], 0
        for _ in range(3):
            started = time.perf_counter()
            size = sum(len(im.heifsave_buffer(Q=70, compression="av1", effort=effort, bitdepth=8)) for im in images)
            runs.append((time.perf_counter() - started) * 1000 / len(images))
        print(f"| {effort} | {statistics.median(runs):.0f} | {size // len(images):,} |")


if __name__ == "__main__":
    main()
