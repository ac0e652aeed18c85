"""Quality defaults per output format, chosen by measurement.

For real photos (Thumbor's portraits, Debian's 5K wallpapers scaled to a delivery size) encode with
the engine Thumbor uses (Pillow) at several qualities, and measure bytes and SSIM (scikit-image,
on luma) against the unencoded resized image. A format's default is the lowest quality whose mean
SSIM reaches the target, 0.984 (luma SSIM above ~0.98 is where differences stop being visible
in side-by-side viewing of photos at 1:1). Writes bench/results/quality.md.

Run: scripts/setup test && scripts/fetch-images && .venv/bin/pip install scikit-image &&
     .venv/bin/python bench/quality.py
"""

from __future__ import annotations

import io
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import write_report  # noqa: E402

QUALITIES = [40, 50, 60, 65, 70, 75, 80, 85, 90, 95]
FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
TARGET_SSIM = 0.984
REFERENCE = ("jpeg", 80)  # Thumbor's own default QUALITY


def images() -> list[tuple[str, Image.Image]]:
    import thumbor

    fixtures = Path(thumbor.__file__).parent / "fixtures" / "filters"
    paths = [fixtures / n for n in ("800px-Christophe_Henner_-_June_2016.jpg", "800px-Guido-portrait-2014.jpg",
                                    "800px-Katherine_Maher.jpg")]
    paths += sorted((ROOT / ".cache" / "images").glob("*-5120x2880.jpg"))
    result = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        if image.width > 1280:  # delivery size (the `hero` preset)
            image = image.resize((1280, round(image.height * 1280 / image.width)), Image.LANCZOS)
        result.append((path.name, image))
    return result


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def measure(image: Image.Image, fmt: str, quality: int) -> tuple[int, float]:
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[fmt], quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return len(buffer.getvalue()), structural_similarity(luma(image), luma(decoded), data_range=255)


def main() -> int:
    photos = images()
    if len(photos) < 4:
        print("run scripts/fetch-images first for the wallpapers", file=sys.stderr)
    table: dict[tuple[str, int], tuple[float, float]] = {}
    for fmt in FORMATS:
        for quality in QUALITIES:
            sizes, scores = zip(*(measure(img, fmt, quality) for _, img in photos), strict=True)
            table[(fmt, quality)] = (statistics.mean(sizes), statistics.mean(scores))
    target_ssim = TARGET_SSIM
    lines = [
        "# Quality defaults (bench/quality.py)",
        "",
        f"Images: {', '.join(name for name, _ in photos)} (wallpapers scaled to 1280 wide).",
        f"Target: mean luma SSIM >= {target_ssim}. Reference for sizes: JPEG q{REFERENCE[1]} (Thumbor's default).",
        "",
        "| format | quality | mean bytes | mean SSIM |",
        "|---|---|---|---|",
    ]
    for (fmt, quality), (size, ssim) in table.items():
        lines.append(f"| {fmt} | {quality} | {size:,.0f} | {ssim:.4f} |")
    lines += ["", f"| format | chosen quality | mean bytes | mean SSIM | bytes vs JPEG q{REFERENCE[1]} |",
              "|---|---|---|---|---|"]
    for fmt in FORMATS:
        chosen = next((q for q in QUALITIES if table[(fmt, q)][1] >= target_ssim), None)
        if chosen is None:
            lines.append(f"| {fmt} | target not reached up to {QUALITIES[-1]} | | | |")
            continue
        size, ssim = table[(fmt, chosen)]
        lines.append(f"| {fmt} | {chosen} | {size:,.0f} | {ssim:.4f} | {size / table[REFERENCE][0]:.2f}x |")
    write_report("quality", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
