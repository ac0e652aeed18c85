"""Side by side, in one run: imgstack (as ``imgstack dev`` starts it), stock Thumbor 7.8 + tc_aws
7.0.4, and the bare imaging libraries (Pillow, pyvips) on the same requests (issue 11).

Run from a checkout: ``scripts/setup && .venv/bin/python bench/compare.py`` (about 30 minutes on
2 cores; ``--quick`` about 2). It fetches its corpus (Debian wallpaper packages, Thumbor's
portraits) into .cache/bench/, creates .cache/bench/stock-venv for the stock stack, starts the
embedded S3 server, both stacks and a pool of library workers, all on loopback, measures, stops
everything, and writes bench/results/compare.{md,json,png}.

Rows:
- misses: every request a render. Each request has a size used nowhere else in the run
  (``fit-in/WxH``, ``WxH`` fill or ``WxH/smart``, W in 400-512), so it is a new result-storage key;
  concurrency 1 and 4, keep-alive connections; the bare libraries render the same requests from
  bytes in memory with ``min(concurrency, cores)`` jobs in flight. Each row is measured in rounds
  (``--rounds``, 4): in a round every target in turn renders the round's sizes for ``--duration``
  seconds, so that a slower or faster spell of this shared machine falls on every target; a
  target's req/s is the median of its rounds. The rows a goal of issue 11 is judged on (the goal
  shapes at the highest concurrency) get ``--goal-rounds`` (8): with 4, the same row's ratio moved
  by up to 0.1x from run to run.
- hits: the same URLs again (our result storage answers) against presigned GETs of the same
  bytes straight from S3, through the same client loop, in rounds as the misses are (each round
  starts with the next target).
Per row: req/s, p50/p95 latency, CPU ms per request of the server's process tree (and of the S3
server's), peak RSS of the tree, and /healthcheck latency probed every 100 ms in a round of c=4 misses
of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _compare_bare as bare  # noqa: E402
from _compare_corpus import corpus as fetch_corpus  # noqa: E402
from _compare_load import (  # noqa: E402
    HealthProbe,
    Request,
    Run,
    TreeMonitor,
    http_run,
    median_per_group,
    percentile,
    pool_run,
    spread_per_group,
)
from _compare_report import write_reports  # noqa: E402
from _compare_stacks import (  # noqa: E402
    BUCKET,
    COLD,
    HOST,
    SECURITY_KEY,
    Server,
    ensure_stock_venv,
    s3_client,
    shipped_settings,
    start_ours,
    start_s3,
    start_stock,
)
from thumbor_plugins.urls import build_url  # noqa: E402

MIB = 1024 * 1024
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
HIT_URLS = 50


@dataclass(frozen=True)
class Shape:
    """One kind of miss request; a row per concurrency and target."""

    id: str
    label: str
    source: str  # corpus set
    mode: str  # fit | fill | smart
    output: str  # the format every target must produce
    accept: str | None = None
    #: stock Thumbor checks WebP before AVIF, so it answers "image/avif,image/webp" with WebP;
    #: it is asked for AVIF alone to render the same thing
    stock_accept: str | None = None
    goal: bool = False  # issue 11: >= 0.85x the bare libraries at c=4
    #: the libraries whose pipeline does the servers' work (libvips' smart crop is a saliency
    #: measure, not Thumbor's face detection): only these count as "bare best"
    same_work: tuple[str, ...] = ("pillow", "pyvips")


SHAPES = [
    Shape("jpeg", "JPEG → JPEG, fit-in", "jpeg", "fit", "jpeg", goal=True),
    Shape("png", "PNG → PNG, fit-in", "png", "fit", "png", goal=True),
    Shape("webp", "WebP → WebP, fit-in", "webp", "fit", "webp"),
    Shape("jpeg-webp", "JPEG → WebP, fit-in, Accept: image/webp", "jpeg", "fit", "webp",
          accept="image/webp", goal=True),
    Shape("jpeg-avif", "JPEG → AVIF, fit-in, Accept: image/avif,image/webp", "jpeg", "fit", "avif",
          accept="image/avif,image/webp", stock_accept="image/avif", goal=True),
    Shape("fill", "JPEG → JPEG, fill crop", "jpeg", "fill", "jpeg"),
    Shape("smart", "portrait → JPEG, smart crop", "portrait", "smart", "jpeg", same_work=("pillow",)),
]
SECTIONS = [shape.id for shape in SHAPES] + ["hits"]


class Sizes:
    """Output sizes never handed out twice in a run: W cycles through 400-512 and the other side
    steps through 401 values, so that every request of our stack is a new result-storage key
    (counted per mode: a fit-in box and a crop of the same size are different URLs).
    Warm-up sizes stay below 400, apart from every measured one."""

    WIDTHS, STEPS = 113, 401
    CAPACITY = WIDTHS * STEPS  # distinct sizes per mode; parse_args keeps a run below it

    def __init__(self) -> None:
        self._next: Counter[str] = Counter()
        self._warm = 0

    def reserve(self, mode: str, count: int) -> list[tuple[int, int]]:
        numbers = range(self._next[mode], self._next[mode] + count)
        self._next[mode] += count
        return [self._size(mode, 400 + n % self.WIDTHS, n // self.WIDTHS) for n in numbers]

    def warm(self, mode: str, count: int) -> list[tuple[int, int]]:
        sizes = [self._size(mode, 300 + (self._warm + i) % 100, 0) for i in range(count)]
        self._warm += count
        return sizes

    @staticmethod
    def _size(mode: str, width: int, step: int) -> tuple[int, int]:
        # a fit-in box taller than wide keeps landscape outputs W wide; crops are 280 high and up (a
        # run uses the first few dozen steps of a crop mode)
        return (width, width + step) if mode == "fit" else (width, 280 + step)


def row_rounds(args: argparse.Namespace, shape: Shape, concurrency: int) -> int:
    """Rounds of a miss row: ``--goal-rounds`` where a goal is judged (a goal shape at the highest
    concurrency), else ``--rounds``."""
    judged = shape.goal and concurrency == max(args.concurrency)
    return args.goal_rounds if judged else args.rounds


def hit_rounds(args: argparse.Namespace, concurrency: int) -> int:
    """Rounds of a hit row: ``--goal-rounds`` at the highest concurrency (the hit goal is judged
    there), else ``--rounds``. A single 5-second stretch per target put the same code's ratio
    anywhere from 0.76x to 1.11x across runs."""
    return args.goal_rounds if concurrency == max(args.concurrency) else args.rounds


def ensure_bench_extra() -> None:
    """matplotlib draws the chart: install the ``bench`` extra into this venv when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["bench"]
        print(f"installing the bench extra ({', '.join(extra)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *extra],
                       check=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Measured:
    """One target's figures over one stretch of requests (a row, or one round of a row)."""

    run: Run
    cpu: float  # seconds of the server tree's (or the library workers') CPU
    rss: int  # peak bytes
    s3_cpu: float | None = None
    health: list[float] | None = None  # /healthcheck latencies, seconds, when probed
    health_failures: int = 0

    @property
    def ok(self) -> int:
        return sum(1 for s in self.run.samples if s.status == 200)

    @property
    def rps(self) -> float:
        return self.ok / self.run.seconds if self.run.seconds else 0.0


def summarize(parts: list[Measured]) -> dict:
    """A row from its rounds: req/s is the median of the rounds' (each round's target measured
    back to back with the others', so that the machine's drift over a run — other tenants, clock
    changes — moves every target alike); latencies and CPU are over every request of the rounds."""
    run = Run(samples=[s for part in parts for s in part.run.samples], seconds=sum(p.run.seconds for p in parts))
    ok = [s for s in run.samples if s.status == 200]
    latencies = [s.latency for s in ok]
    cpu = sum(part.cpu for part in parts)
    return {
        "requests": len(ok),
        "errors": dict(Counter(s.status for s in run.samples if s.status != 200)),
        "seconds": round(run.seconds, 3),
        "rps": round(statistics.median(part.rps for part in parts), 2),
        "rps_rounds": [round(part.rps, 2) for part in parts],
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p95_ms": _ms(percentile(latencies, 0.95)),
        "p95_over_p50_per_original": _round(spread_per_group(ok), 2),
        "p50_ms_by_original": median_per_group(ok),
        "cpu_ms_per_request": round(cpu / len(ok) * 1000, 1) if ok else None,
        "peak_rss_mb": round(max(part.rss for part in parts) / MIB, 1),
        "content_types": dict(Counter(s.content_type.split(";")[0] for s in ok)),
        "mean_bytes": round(sum(s.size for s in ok) / len(ok)) if ok else None,
    }


def http_summary(parts: list[Measured], probed: Measured | None = None) -> dict:
    """summarize, plus the S3 server's CPU, of an HTTP target; with ``probed`` (a round of its
    own under the same load), the /healthcheck probes and that round's req/s."""
    row = summarize(parts)
    ok = row["requests"]
    row["s3_cpu_ms_per_request"] = round(sum(p.s3_cpu or 0 for p in parts) / ok * 1000, 1) if ok else None
    if probed is not None and probed.health is not None:
        latencies = probed.health
        row |= {"health_probes": len(latencies), "health_failures": probed.health_failures,
                "health_p99_ms": _ms(percentile(latencies, 0.99)),
                "health_max_ms": _ms(max(latencies, default=None)),
                "health_latencies_ms": [_ms(x) for x in latencies],
                "rps_probed": round(probed.rps, 2)}
    return row


class Bench:
    def __init__(self, args: argparse.Namespace, keys: dict[str, list[str]], s3, ours: Server, stock: Server,
                 pool: ProcessPoolExecutor, run_dir: Path) -> None:
        self.args, self.keys, self.s3, self.ours, self.stock, self.pool = args, keys, s3, ours, stock, pool
        self.run_dir = run_dir
        self.sizes = Sizes()
        self.rows: list[dict] = []
        self.processes: dict[str, list[dict]] = {}  # per stack, at the end of the run

    # --- one row ---------------------------------------------------------------------------------

    def http_part(self, server: Server, requests: list[Request], concurrency: int, *, probe: bool) -> Measured:
        health = HealthProbe(HOST, server.port) if probe else contextlib.nullcontext()
        with TreeMonitor(server.roots) as tree, TreeMonitor(lambda: [self.s3.process.popen.pid]) as s3, health:
            run = http_run(HOST, server.port, requests, concurrency, self.args.duration)
        if probe:
            return Measured(run, tree.cpu, tree.peak_rss, s3.cpu, health.latencies, health.failures)
        return Measured(run, tree.cpu, tree.peak_rss, s3.cpu)

    def bare_part(self, jobs: list[bare.Job], concurrency: int) -> Measured:
        workers = [p.pid for p in multiprocessing.active_children()]  # the pool's, started by the warm-up
        with TreeMonitor(lambda: workers) as tree:
            run = pool_run(self.pool, bare.render, jobs, min(concurrency, self.args.cores), self.args.duration)
        return Measured(run, tree.cpu, tree.peak_rss)

    def record(self, section: str, shape: str, label: str, concurrency: int, target: str, row: dict) -> None:
        row = {"section": section, "shape": shape, "label": label, "concurrency": concurrency, "target": target} | row
        self.rows.append(row)
        print(f"  {label:<52} c={concurrency} {target:<6} {row['rps']:8.1f} req/s  p50 {row['p50_ms']} ms  "
              f"p95 {row['p95_ms']} ms  errors {row['errors'] or 0}", flush=True)

    # --- sections --------------------------------------------------------------------------------

    def requests(self, shape: Shape, sizes: list[tuple[int, int]], *, stock: bool) -> list[Request]:
        accept = (shape.stock_accept if stock and shape.stock_accept else None) or shape.accept
        headers = {"Accept": accept} if accept else {}
        keys = self.keys[shape.source]
        requests = []
        for i, (w, h) in enumerate(sizes):
            key = keys[i % len(keys)]
            url = build_url(f"{BUCKET}/{key}", key=SECURITY_KEY, width=w, height=h, fit_in=shape.mode == "fit",
                            smart=shape.mode == "smart")
            requests.append(Request(url, headers, _corpus_key(key)))
        return requests

    def jobs(self, shape: Shape, sizes: list[tuple[int, int]], library: str) -> list[bare.Job]:
        keys = self.keys[shape.source]
        return [bare.Job(library, _corpus_key(keys[i % len(keys)]), shape.mode, w, h, shape.output)
                for i, (w, h) in enumerate(sizes)]

    def warm_up(self, shape: Shape) -> None:
        """Thumbor loads engines, detectors and S3 clients on first use, in each of its processes;
        the pool's workers import the libraries."""
        sizes = self.sizes.warm(shape.mode, 4)
        for server, stock in ((self.ours, False), (self.stock, True)):
            http_run(HOST, server.port, self.requests(shape, sizes, stock=stock), 4, 60)
        for library in ("pillow", "pyvips"):
            pool_run(self.pool, bare.render, self.jobs(shape, sizes, library), self.args.cores, 60)

    def miss_rows(self, shape: Shape) -> None:
        """Per concurrency, ``--rounds`` rounds; in each, every target renders the same new sizes,
        one target after the other. At the highest concurrency each server then gets one more
        round with the /healthcheck probe: its latency under the same load, kept out of the
        throughput rounds (the probe's ten connections a second cost the server about 2% of its
        CPU, which the bare libraries would not pay)."""
        self.warm_up(shape)
        servers = (("ours", self.ours), ("stock", self.stock))
        for concurrency in self.args.concurrency:
            parts: dict[str, list[Measured]] = {name: [] for name in ("ours", "stock", "pillow", "pyvips")}
            for _ in range(row_rounds(self.args, shape, concurrency)):
                sizes = self.sizes.reserve(shape.mode, self.args.max_requests)
                for name, server in servers:
                    parts[name].append(self.http_part(server, self.requests(shape, sizes, stock=server is self.stock),
                                                      concurrency, probe=False))
                    time.sleep(0.5)  # lets our result-storage writes finish outside the next target's turn
                for library in ("pillow", "pyvips"):
                    parts[library].append(self.bare_part(self.jobs(shape, sizes, library), concurrency))
            probed: dict[str, Measured] = {}
            if concurrency == max(self.args.concurrency):
                sizes = self.sizes.reserve(shape.mode, self.args.max_requests)
                for name, server in servers:
                    probed[name] = self.http_part(server, self.requests(shape, sizes, stock=server is self.stock),
                                                  concurrency, probe=True)
                    time.sleep(0.5)
            for name, _ in servers:
                row = http_summary(parts[name], probed.get(name))
                self.record("miss", shape.id, shape.label, concurrency, name, row)
            for library in ("pillow", "pyvips"):
                row = summarize(parts[library])
                row["content_types"] = {CONTENT_TYPES[shape.output]: row["requests"]}
                self.record("miss", shape.id, shape.label, concurrency, library,
                            row | {"same_work": library in shape.same_work})

    def hit_rows(self) -> None:
        """Render HIT_URLS results once, then request them again in a loop; the raw S3 side GETs
        copies of the very bytes served, through presigned URLs and the same client loop."""
        shape = SHAPES[0]
        urls = self.requests(shape, self.sizes.reserve(shape.mode, min(HIT_URLS, self.args.max_requests)), stock=False)
        http_run(HOST, self.ours.port, urls, 4, 300)
        time.sleep(1)  # the result-storage writes may follow the responses
        served = http_run(HOST, self.ours.port, urls, 1, 300, keep_bodies=True).bodies
        client = s3_client(self.s3)
        raw = []
        for index, body in served.items():
            key = f"bench-raw/{index}.jpg"
            client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/jpeg")
            presigned = urlsplit(client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600))
            raw.append(Request(f"{presigned.path}?{presigned.query}", {}))
        s3_port = urlsplit(self.s3.endpoint_url).port
        count = self.args.max_requests * 20  # a hit costs a few ms: let the time bound end the row
        s3_server = Server("s3", self.s3.process, s3_port)
        # the same stack with its hot results off: every hit reads the result storage in S3
        cold = start_ours(self.s3, self.run_dir, COLD, IMGSTACK_HOT_RESULTS_BYTES="0")
        sides = (("ours", self.ours, urls), (COLD, cold, urls), ("s3", s3_server, raw))
        targets = [(name, server, [requests[i % len(requests)] for i in range(count)])
                   for name, server, requests in sides]
        try:
            for concurrency in self.args.concurrency:
                parts: dict[str, list[Measured]] = {name: [] for name, _, _ in targets}
                for index in range(hit_rounds(self.args, concurrency)):
                    # each round starts with the next target, so that none always follows the same one
                    first = index % len(targets)
                    for name, server, loop in targets[first:] + targets[:first]:
                        parts[name].append(self.http_part(server, loop, concurrency, probe=False))
                for name, _, _ in targets:
                    self.record("hit", "hits", "JPEG fit-in, result-storage hit vs S3 GET", concurrency, name,
                                http_summary(parts[name]))
        finally:
            cold.stop()


def _corpus_key(s3_key: str) -> str:
    """bench/jpeg/a.jpg -> jpeg/a.jpg (the workers' corpus keys)."""
    return s3_key.split("/", 1)[1]


def upload(s3, files: dict[str, dict[str, Path]]) -> dict[str, list[str]]:
    """Uploads the corpus to the originals bucket; {set: [S3 key, ...]}."""
    client = s3_client(s3)
    keys: dict[str, list[str]] = {}
    for name, paths in files.items():
        for file, path in paths.items():
            key = f"bench/{name}/{file}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
            keys.setdefault(name, []).append(key)
    return keys


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds per target and round (default 5); a hit row: seconds per row")
    parser.add_argument("--max-requests", type=int, default=500,
                        help="requests per target and round of a miss row at most (default 500)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds per miss row (default 4): the targets take turns, req/s is the median")
    parser.add_argument("--goal-rounds", type=int, default=8,
                        help="rounds of the rows a goal is judged on: the goal shapes at the highest "
                             "concurrency (default 8)")
    parser.add_argument("--concurrency", default="1,4", help="client concurrencies (default 1,4)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="1-second rows of 50 requests at most: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.max_requests, args.rounds, args.goal_rounds = 1.0, 50, 1, 1
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {','.join(SECTIONS)}")
    if args.rounds < 1 or args.goal_rounds < 1:
        parser.error("--rounds and --goal-rounds must be at least 1")
    args.goal_rounds = max(args.rounds, args.goal_rounds)  # never fewer than the other rows
    # per mode: every round of every concurrency, the probed round, and the hit rows' URLs
    for mode in {shape.mode for shape in SHAPES}:
        rounds = sum(sum(row_rounds(args, shape, c) for c in args.concurrency) + 1
                     for shape in SHAPES if shape.mode == mode)
        needed = rounds * args.max_requests
        if needed + (HIT_URLS if mode == SHAPES[0].mode else 0) > Sizes.CAPACITY:
            parser.error("--max-requests too high: the run would need more distinct sizes than there are")
    args.cores = os.cpu_count() or 1
    return args


def run(args: argparse.Namespace, files: dict[str, dict[str, Path]], run_dir: Path) -> Bench:
    shipped = shipped_settings()
    qualities = {"jpeg": shipped["QUALITY"], "webp": shipped["WEBP_QUALITY"], "avif": shipped["AVIF_QUALITY"]}
    with contextlib.ExitStack() as stack:
        venv = ensure_stock_venv(CACHE)
        s3 = start_s3(run_dir)
        stack.callback(s3.stop)
        keys = upload(s3, files)
        ours = start_ours(s3, run_dir)
        stack.callback(ours.stop)
        stock = start_stock(venv, s3, run_dir)
        stack.callback(stock.stop)
        paths = {f"{name}/{file}": str(path) for name, group in files.items() for file, path in group.items()}
        pool = ProcessPoolExecutor(args.cores, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=bare.init_worker,
                                   initargs=(paths, qualities, bool(shipped.get("PROGRESSIVE_JPEG", True))))
        stack.callback(pool.shutdown, cancel_futures=True)
        bench = Bench(args, keys, s3, ours, stock, pool, run_dir)
        for shape in SHAPES:
            if shape.id in args.only and shape.source in keys:
                print(shape.label, flush=True)
                bench.miss_rows(shape)
        if "hits" in args.only:
            print("hits", flush=True)
            bench.hit_rows()
        bench.processes = {server.name: server.describe() for server in (ours, stock)}
        return bench


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so every server is stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ensure_bench_extra()
    files = fetch_corpus(CACHE)
    run_dir = CACHE / "run"  # logs of the last run stay here
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.monotonic()
    bench = run(args, files, run_dir)
    write_reports(bench, files, time.monotonic() - started, goal_shapes={s.id for s in SHAPES if s.goal},
                  partial=args.quick or set(args.only) != set(SECTIONS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
