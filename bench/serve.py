"""Serving latency side by side: result-storage hit vs miss (render), JPEG vs negotiated AVIF/WebP,
on a real 5120x2880 photo, against the embedded stack (SeaweedFS + Thumbor, loopback).

Run: scripts/setup test && scripts/fetch-images && .venv/bin/python bench/serve.py [--runs 15]
Writes bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import peak_rss_mb, write_report  # noqa: E402
from thumbor_plugins import embedded  # noqa: E402
from thumbor_plugins.urls import build_url  # noqa: E402

KEY = "bench-security-key-0123456789abcdef"
ACCEPT = {"jpeg": "image/jpeg", "webp": "image/webp,*/*", "avif": "image/avif,image/webp,*/*"}


def timed(http: httpx.Client, url: str, accept: str) -> float:
    started = time.perf_counter()
    response = http.get(url, headers={"Accept": accept})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.status_code
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    photo = ROOT / ".cache" / "images" / "flow-5120x2880.jpg"
    if not photo.exists():
        print("run scripts/fetch-images first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        s3 = embedded.start_s3(Path(tmp) / "s3")
        thumbor = None
        try:
            embedded.ensure_buckets(s3.endpoint_url, s3.access_key, s3.secret_key, ["images", "images-derived"])
            from thumbor_plugins.s3.settings import S3Settings
            from thumbor_plugins.s3.sync import client

            client(S3Settings(endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key=s3.secret_key)
                   ).put_object(Bucket="images", Key="bench/flow.jpg", Body=photo.read_bytes())
            env = {"SECURITY_KEY": KEY, "IMGSTACK_S3_ENDPOINT_URL": s3.endpoint_url,
                   "IMGSTACK_S3_ACCESS_KEY": s3.access_key, "IMGSTACK_S3_SECRET_KEY": s3.secret_key,
                   "IMGSTACK_ACCESS_LOG": "false", "PATH": "/usr/bin:/bin"}
            thumbor = embedded.start_thumbor(env, Path(tmp) / "thumbor.log")
            rows = []
            http = httpx.Client(timeout=120)  # keep-alive, like a CDN in front
            for fmt, accept in ACCEPT.items():
                urls = [build_url("images/bench/flow.jpg", key=KEY, base=thumbor.url, width=300 + i, height=200)
                        for i in range(args.runs)]
                misses = [timed(http, url, accept) for url in urls]
                time.sleep(1)  # results are stored after the response
                hits = [timed(http, url, accept) for url in urls for _ in range(3)]
                rows.append((fmt, statistics.median(misses), statistics.median(hits)))
            http.close()
            rss = peak_rss_mb(thumbor.process.popen.pid)
        finally:
            if thumbor is not None:
                thumbor.stop()
            s3.stop()
    lines = [
        "# Serving latency (bench/serve.py)",
        "",
        f"5120x2880 JPEG ({photo.stat().st_size:,} bytes) -> 300x200 crop, {args.runs} distinct sizes per format;",
        "hit = the same URLs again (3 times each), served from the result storage. Embedded stack on",
        "loopback (SeaweedFS + one Thumbor process), 2 cores.",
        "",
        "| output | miss (render) median | hit median | miss / hit |",
        "|---|---|---|---|",
    ]
    for fmt, miss, hit in rows:
        lines.append(f"| {fmt} | {miss * 1000:.0f} ms | {hit * 1000:.1f} ms | {miss / hit:.0f}x |")
    lines += ["", f"Thumbor peak RSS after all renders: {rss:.0f} MB."]
    write_report("serve", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
