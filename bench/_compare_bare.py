"""The bare-library figure of bench/compare.py: the same requests rendered by Pillow and by pyvips
straight from bytes already in memory, in worker processes (no HTTP, no S3, no Thumbor).

Workers run in a ``spawn`` pool (no fork of a process holding threads and servers' pipes); each
loads the whole corpus once in its initializer, so a job carries only names and numbers.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import NamedTuple

#: output format -> Pillow's format name
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
#: output format -> libvips saver suffix
_VIPS_SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "avif": ".avif"}

_corpus: dict[str, bytes] = {}
_qualities: dict[str, int] = {}
_faces = None
#: JPEG written progressive, as the servers write it with PROGRESSIVE_JPEG
_progressive = True


class Job(NamedTuple):
    library: str  # "pillow" | "pyvips"
    key: str  # corpus key, e.g. "jpeg/shell.jpg"
    mode: str  # "fit" (fit-in box) | "fill" (crop to WxH) | "smart" (crop around faces)
    width: int
    height: int
    output: str  # jpeg | png | webp | avif


def init_worker(paths: dict[str, str], qualities: dict[str, int], progressive: bool = True) -> None:
    import cv2
    import pyvips
    import thumbor

    global _faces, _progressive
    _progressive = progressive
    _corpus.update({key: Path(path).read_bytes() for key, path in paths.items()})
    _qualities.update(qualities)
    # libvips would otherwise keep recent operations and answer a repeated one from memory
    pyvips.cache_set_max(0)
    # the cascade Thumbor's face detector loads (FACE_DETECTOR_CASCADE_FILE's default)
    cascade = Path(thumbor.__file__).parent / "detectors" / "face_detector" / "haarcascade_frontalface_alt.xml"
    _faces = cv2.CascadeClassifier(str(cascade))


def render(job: Job) -> tuple[float, int]:
    """(seconds, output bytes) for one job."""
    started = time.perf_counter()
    data = _corpus[job.key]
    out = _pillow(data, job) if job.library == "pillow" else _pyvips(data, job)
    return time.perf_counter() - started, len(out)


def _face_centre(image) -> tuple[float, float]:
    """Centre of the detected faces as fractions of the image (Pillow's ``centering``); the
    middle when there is none. Cascade and parameters are those of Thumbor's face detector."""
    import numpy as np

    smallest = max(20, min(image.size) // 15)
    found = _faces.detectMultiScale(np.asarray(image.convert("L")), 1.2, 4, minSize=(smallest, smallest))
    if len(found) == 0:
        return 0.5, 0.5
    xs = [x + w / 2 for x, _, w, _ in found]
    ys = [y + h / 2 for _, y, _, h in found]
    return sum(xs) / len(xs) / image.width, sum(ys) / len(ys) / image.height


def _pillow(data: bytes, job: Job) -> bytes:
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    if job.mode == "fit":
        image.draft("RGB", (job.width, job.height))
        image.thumbnail((job.width, job.height))
    else:
        # the smallest JPEG DCT scale that still covers the crop
        scale = max(job.width / image.width, job.height / image.height)
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        centre = _face_centre(image) if job.mode == "smart" else (0.5, 0.5)
        image = ImageOps.fit(image, (job.width, job.height), centering=centre)
    if job.output == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    options = {} if job.output == "png" else {"quality": _qualities[job.output]}
    if job.output == "jpeg":
        # as Thumbor's PIL engine writes JPEG (and the libvips engine): optimized Huffman tables,
        # progressive with PROGRESSIVE_JPEG (Thumbor's default, on)
        options |= {"optimize": True, "progressive": _progressive}
    image.save(buffer, _PILLOW_FORMATS[job.output], **options)
    return buffer.getvalue()


def _pyvips(data: bytes, job: Job) -> bytes:
    import pyvips

    # libvips' smart crop is its saliency measure ("attention"), not face detection
    crop = {"fit": "none", "fill": "centre", "smart": "attention"}[job.mode]
    image = pyvips.Image.thumbnail_buffer(data, job.width, height=job.height, crop=crop)
    # PNG as both servers write it (zlib level 6, the best filter per row: what Pillow does, and
    # the libvips engine's pngsave settings); libvips' own default skips the row filters and
    # writes files about 1.8x larger
    options = {"compression": 6, "filter": "all"} if job.output == "png" else {"Q": _qualities[job.output]}
    if job.output == "jpeg":
        options |= {"optimize_coding": True, "interlace": _progressive}
    if job.output == "avif":
        # Thumbor leaves Pillow's AVIF speed at its default, 6 = libaom cpu-used 6 = libvips effort 3
        options["effort"] = 3
    return image.write_to_buffer(_VIPS_SUFFIXES[job.output], **options)
