"""What a cache miss costs apart from HTTP, measured piece by piece (the numbers in docs/decisions.md
and the README's performance section):

1. the S3 server's CPU per request (the embedded SeaweedFS, the ``weed`` process's user + system
   time over 200 requests of each kind): a GET of a 4.6 MB original, the same GET answered 304 to
   ``If-None-Match``, a HEAD, a GET of a missing key, a PUT of a 25 KB result with metadata;
2. the render alone, in-process, two processes side by side (as the servers' two cores): our
   libvips pipeline (``vips_engine``'s steps: shrink-on-load, premultiplied 8-bit resize,
   encode) against libvips' own ``thumbnail_buffer``, on the JPEG and PNG corpus of
   ``bench/compare.py`` (fetched by it into .cache/bench/corpus).

    .venv/bin/python bench/miss_costs.py        # about a minute; writes bench/results/miss_costs.md
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / ".cache" / "bench" / "corpus"
REQUESTS = 200


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def s3_costs() -> list[tuple[str, float]]:
    from thumbor_plugins import embedded
    from thumbor_plugins.s3.settings import S3Settings
    from thumbor_plugins.s3.sync import client as s3_client

    server = embedded.start_s3(Path(tempfile.mkdtemp()))
    try:
        embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key, ["images", "derived"])
        s3 = s3_client(S3Settings(endpoint_url=server.endpoint_url, access_key=server.access_key,
                                  secret_key=server.secret_key))
        original = sorted(glob.glob(str(CORPUS / "jpeg" / "*")))[-1]
        body = Path(original).read_bytes()
        etag = s3.put_object(Bucket="images", Key="original", Body=body)["ETag"]
        result = os.urandom(25_000)

        def missing(i: int) -> None:
            try:
                s3.get_object(Bucket="derived", Key=f"missing/{i}")
            except s3.exceptions.NoSuchKey:
                pass

        def not_modified(i: int) -> None:  # noqa: ARG001
            try:
                s3.get_object(Bucket="images", Key="original", IfNoneMatch=etag)
            except Exception as error:  # botocore raises on 304
                if "304" not in str(error):
                    raise

        kinds = [
            (f"GET of a {len(body) / 1e6:.1f} MB original", lambda i: s3.get_object(Bucket="images", Key="original")
             ["Body"].read()),
            ("the same GET with If-None-Match, answered 304", not_modified),
            ("HEAD of the original", lambda i: s3.head_object(Bucket="images", Key="original")),
            ("GET of a missing result (404)", missing),
            ("PUT of a 25 KB result with metadata", lambda i: s3.put_object(
                Bucket="derived", Key=f"r/{i}", Body=result, Metadata={"source-etag": "x"})),
        ]
        pid = server.process.popen.pid
        rows = []
        for label, call in kinds:
            time.sleep(1)  # the server settles
            before = _cpu(pid)
            for i in range(REQUESTS):
                call(i)
            time.sleep(0.5)
            rows.append((label, (_cpu(pid) - before) / REQUESTS * 1000))
        return rows
    finally:
        server.stop()


def _render(args: tuple[str, str, int]) -> tuple[float, int]:
    """(CPU seconds, renders) of one process rendering every file of a format set 3 times."""
    way, formats, rounds = args
    import pyvips

    from thumbor_plugins.vips_engine import _jpeg_shrink

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(2)
    files = [Path(p).read_bytes() for p in sorted(glob.glob(str(CORPUS / formats / "*")))]
    save = (lambda im: im.pngsave_buffer(compression=6, filter="all")) if formats == "png" else \
        (lambda im: im.jpegsave_buffer(Q=75, optimize_coding=True, interlace=True))
    started, count = time.process_time(), 0
    for round_ in range(rounds):
        for index, data in enumerate(files):
            width = 400 + index + 7 * round_
            if way == "thumbnail_buffer":
                save(pyvips.Image.thumbnail_buffer(data, width, height=10 * width))
            else:
                header = pyvips.Image.new_from_buffer(data, "")
                height = max(1, round(header.height * width / header.width))
                options: dict = {"access": "sequential"}
                if formats == "jpeg":
                    shrink = _jpeg_shrink((header.width, header.height), (width, height))
                    options |= {"shrink": shrink} if shrink > 1 else {}
                image = pyvips.Image.new_from_buffer(data, "", **options)
                alpha, source_format = image.hasalpha(), image.format
                if alpha:
                    image = image.premultiply().rint().cast(source_format)
                image = image.resize(width / image.width, vscale=height / image.height, kernel="lanczos3")
                if alpha:
                    image = image.unpremultiply().cast(source_format)
                save(image.copy_memory())
            count += 1
    return time.process_time() - started, count


def render_costs() -> list[tuple[str, float]]:
    rows = []
    for formats in ("jpeg", "png"):
        for way in ("our pipeline", "thumbnail_buffer"):
            with ProcessPoolExecutor(2) as pool:
                done = list(pool.map(_render, [(way, formats, 3)] * 2))
            rows.append((f"{formats.upper()}: {way}", sum(c for c, _ in done) / sum(n for _, n in done) * 1000))
    return rows


def main() -> int:
    if not (CORPUS / "jpeg").is_dir():
        print("no corpus: run bench/compare.py once (it fetches it)", file=sys.stderr)
        return 2
    s3_rows, render_rows = s3_costs(), render_costs()
    lines = [
        "# What a miss costs apart from HTTP (bench/miss_costs.py)", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {os.cpu_count()} cores", "",
        f"## The S3 server's CPU per request (embedded SeaweedFS, {REQUESTS} requests each)", "",
        "| request | S3 server CPU ms |", "|---|---:|",
        *(f"| {label} | {ms:.2f} |" for label, ms in s3_rows), "",
        "## The render alone, two processes side by side (CPU ms per render)", "",
        "| corpus: way | CPU ms |", "|---|---:|",
        *(f"| {label} | {ms:.1f} |" for label, ms in render_rows), "",
    ]
    out = ROOT / "bench" / "results" / "miss_costs.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
