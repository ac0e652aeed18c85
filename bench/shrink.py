"""JPEG shrink-on-load side by side: two Thumbor processes, IMGSTACK_JPEG_SHRINK_ON_LOAD on and
off, the same originals and URLs, requests interleaved, every request a render (distinct sizes,
each process its own result-storage bucket).

Run: scripts/setup test && scripts/fetch-images && .venv/bin/python bench/shrink.py [--runs 9]
Writes bench/results/shrink.md.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import peak_rss_mb, write_report  # noqa: E402
from serve import KEY  # noqa: E402
from thumbor_plugins import embedded  # noqa: E402
from thumbor_plugins.urls import Signer  # noqa: E402

OUTPUTS = {  # name -> path template; {i} makes every URL distinct (always a render)
    "300x200 crop": "{w}x200/{image}",
    "fit-in 320x320 (preset thumb)": "fit-in/{w}x320/{image}",
    "1280 wide (preset hero)": "{w}x0/{image}",
}
BASE_WIDTH = {"300x200 crop": 300, "fit-in 320x320 (preset thumb)": 320, "1280 wide (preset hero)": 1280}


def originals() -> dict[str, bytes]:
    flow = ROOT / ".cache" / "images" / "flow-5120x2880.jpg"
    photo = Image.open(flow).convert("RGB")
    baseline = io.BytesIO()
    photo.save(baseline, "JPEG", quality=90)  # what cameras and phones upload: baseline JPEG
    return {"5120x2880 baseline JPEG (q90)": baseline.getvalue(),
            "5120x2880 progressive JPEG (Debian's)": flow.read_bytes()}


def psnr(a: bytes, b: bytes) -> float:
    x = Image.open(io.BytesIO(a)).convert("RGB")
    y = Image.open(io.BytesIO(b)).convert("RGB")
    if x.size != y.size:
        y = y.resize(x.size, Image.LANCZOS)
    mse = float(np.mean((np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if not (ROOT / ".cache" / "images" / "flow-5120x2880.jpg").exists():
        print("run scripts/fetch-images first", file=sys.stderr)
        return 2
    signer = Signer([KEY])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s3 = embedded.start_s3(Path(tmp) / "s3")
        thumbors = {}
        try:
            embedded.ensure_buckets(s3.endpoint_url, s3.access_key, s3.secret_key,
                                    ["images", "derived-on", "derived-off"])
            from thumbor_plugins.s3.settings import S3Settings
            from thumbor_plugins.s3.sync import client

            s3_client = client(S3Settings(endpoint_url=s3.endpoint_url, access_key=s3.access_key,
                                          secret_key=s3.secret_key))
            sources = originals()
            for index, body in enumerate(sources.values()):
                s3_client.put_object(Bucket="images", Key=f"bench/{index}.jpg", Body=body)
            for mode in ("on", "off"):
                env = {"SECURITY_KEY": KEY, "IMGSTACK_S3_ENDPOINT_URL": s3.endpoint_url,
                       "IMGSTACK_S3_ACCESS_KEY": s3.access_key, "IMGSTACK_S3_SECRET_KEY": s3.secret_key,
                       "IMGSTACK_ACCESS_LOG": "false", "PATH": "/usr/bin:/bin",
                       "IMGSTACK_DERIVED_BUCKET": f"derived-{mode}",
                       "IMGSTACK_JPEG_SHRINK_ON_LOAD": "true" if mode == "on" else "false"}
                thumbors[mode] = embedded.start_thumbor(env, Path(tmp) / f"thumbor-{mode}.log")
            http = httpx.Client(timeout=120)
            for index, source in enumerate(sources):
                for output, template in OUTPUTS.items():
                    times = {"on": [], "off": []}
                    quality = []
                    for i in range(args.runs):
                        path = template.format(w=BASE_WIDTH[output] + i, image=f"images/bench/{index}.jpg")
                        bodies = {}
                        # alternate which process goes first, so neither always has a warm cache
                        for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
                            url = f"{thumbors[mode].url}/{signer.sign(path)}/{path}"
                            started = time.perf_counter()
                            response = http.get(url, headers={"Accept": "image/jpeg"})
                            times[mode].append(time.perf_counter() - started)
                            assert response.status_code == 200, (mode, path, response.status_code)
                            bodies[mode] = response.content
                        quality.append(psnr(bodies["on"], bodies["off"]))
                    on, off = statistics.median(times["on"]), statistics.median(times["off"])
                    rows.append((source, output, off, on, statistics.median(quality)))
                    print(rows[-1], flush=True)
            http.close()
            rss = {mode: peak_rss_mb(t.process.popen.pid) for mode, t in thumbors.items()}
        finally:
            for thumbor in thumbors.values():
                thumbor.stop()
            s3.stop()
    lines = [
        "# JPEG shrink-on-load (bench/shrink.py)",
        "",
        "Two Thumbor processes side by side (IMGSTACK_JPEG_SHRINK_ON_LOAD off / on), the same URLs,",
        f"requests interleaved, {args.runs} distinct sizes per row so every request is a render (miss).",
        "Embedded stack on loopback, 2 cores. PSNR: the two outputs against each other.",
        "",
        "| original | output | off: median | on: median | speed-up | PSNR on vs off |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for source, output, off, on, quality in rows:
        lines.append(f"| {source} | {output} | {off * 1000:.0f} ms | {on * 1000:.0f} ms | {off / on:.1f}x"
                     f" | {quality:.1f} dB |")
    lines += ["", f"Peak RSS after all renders: off {rss['off']:.0f} MB, on {rss['on']:.0f} MB."]
    write_report("shrink", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
