"""Huge originals (issue 17): bounded-memory decode of 192-300 MP JPEGs and PNGs, and misses
rendered from the stored intermediate ("mezzanine"), side by side with and without it.

Run from a checkout: ``scripts/setup test && scripts/fetch-images && .venv/bin/python bench/huge.py``
(``--samples N``, default 5). Writes bench/results/huge.md and huge.json.

Corpus, made once and cached in .cache/images/huge/ (remade only when a file is missing): Debian's
Flow wallpaper (5120x2880) upscaled by libvips with a little gaussian grain so that it compresses
like a photo, saved as baseline JPEG Q90 and, from a sequential re-read of that JPEG, PNG
(compression 3): 16000x12000 (192 MP) and 20000x15000 (300 MP) JPEG and PNG, a 6000x4000 JPEG
(24 MP), and a 2560x1920 JPEG (a "2560-pixel original") and PNG.

Servers, all on loopback: the embedded S3 server and two Thumbor servers with the shipped
config/thumbor.conf (only the S3 endpoint, keys and buckets set), one worker process each
(IMGSTACK_PROCESSES=1) so that one process's CPU and memory can be read: "with" the intermediate
(shipped defaults) and "without" (IMGSTACK_MEZZANINE_MIN_PIXELS=0), each with a derived bucket of
its own, so neither sees the other's results or intermediates.

Every request is sent alone (one at a time, ``Accept: image/jpeg``); per original, the "without"
server's requests come first, then the same URLs on the "with" server (its renders get their PSNR
against the "without" ones). Measured per request: wall latency; CPU ms of the worker and of the S3
server (utime + stime from /proc/<pid>/stat, read again once both have stopped using CPU, so work
done after the response, such as storing the result, is counted); the worker's peak RSS growth
(the high-water mark is reset with ``echo 5 > /proc/<pid>/clear_refs`` before the request, VmHWM
read after, growth over VmRSS before), and its anonymous and file-backed parts (sampled). A "miss
of a new size" is a size that server never rendered before (fit-in/800x800, 796x796, 792x792, ...).
After the requests: what the S3 server spends on a dropped GET of a huge original vs a ranged GET,
and the bare libvips time of the goal-3 thumbnails (servers stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _compare_load import cpu_seconds, tree  # noqa: E402
from _compare_report import _commit, _cpu_model, _versions  # noqa: E402
from _compare_stacks import BUCKET, HOST, SECURITY_KEY, _environ_without_settings, s3_client  # noqa: E402
from report import RESULTS, write_report  # noqa: E402
from thumbor_plugins import embedded  # noqa: E402
from thumbor_plugins.urls import build_url  # noqa: E402

IMAGES = ROOT / ".cache" / "images"
CORPUS_DIR = IMAGES / "huge"
SOURCE = IMAGES / "flow-5120x2880.jpg"
RUN_DIR = ROOT / ".cache" / "bench" / "huge-run"  # logs of the last run stay here
COMMAND = ".venv/bin/python bench/huge.py"
ACCEPT = {"Accept": "image/jpeg"}
MIB = 1024 * 1024

DERIVED = {"with": "derived-with", "without": "derived-without"}
SERVER_LABEL = {"with": "with intermediate", "without": "without"}

#: the issue's bars
PSNR_GOAL_DB = 40.0
TIME_RATIO_GOAL = 2.0  # 300 MP vs 24 MP JPEG; huge-with-intermediate vs 2560-pixel original
RSS_GOAL_MB = 300.0


# --- corpus ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Original:
    id: str
    width: int
    height: int
    fmt: str  # jpeg | png
    label: str

    @property
    def file(self) -> Path:
        return CORPUS_DIR / f"flow-{self.width}x{self.height}.{'jpg' if self.fmt == 'jpeg' else 'png'}"

    @property
    def key(self) -> str:
        return f"huge/{self.file.name}"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


ORIGINALS = {o.id: o for o in (
    Original("jpeg192", 16000, 12000, "jpeg", "16000x12000 JPEG (192 MP)"),
    Original("png192", 16000, 12000, "png", "16000x12000 PNG (192 MP)"),
    Original("jpeg300", 20000, 15000, "jpeg", "20000x15000 JPEG (300 MP)"),
    Original("png300", 20000, 15000, "png", "20000x15000 PNG (300 MP)"),
    Original("jpeg24", 6000, 4000, "jpeg", "6000x4000 JPEG (24 MP)"),
    Original("jpeg2560", 2560, 1920, "jpeg", "2560x1920 JPEG"),
    # context for goal 5: what a PNG of the intermediate's size costs as an original
    Original("png2560", 2560, 1920, "png", "2560x1920 PNG"),
)}


def _grainy_jpeg(width: int, height: int, path: Path) -> None:
    """Flow resized to ``width`` x ``height`` with gaussian grain (sigma 6, the same on every band),
    baseline JPEG Q90."""
    import pyvips

    src = pyvips.Image.new_from_file(str(SOURCE))
    big = src.resize(width / src.width, vscale=height / src.height, kernel="linear")
    noise = pyvips.Image.gaussnoise(width, height, sigma=6, mean=0).cast("char")
    big = (big + noise.bandjoin([noise, noise])).cast("uchar").copy(interpretation="srgb")
    big.jpegsave(str(path), Q=90)


def _png_from(jpeg: Path, path: Path) -> None:
    import pyvips

    pyvips.Image.new_from_file(str(jpeg), access="sequential").pngsave(str(path), compression=3)


def ensure_corpus() -> dict[str, Path]:
    """The corpus files, made where missing (written under a temporary name, then renamed)."""
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    # JPEGs first: each PNG is made from the JPEG of its size
    for original in sorted(ORIGINALS.values(), key=lambda o: o.fmt != "jpeg"):
        if original.file.exists():
            continue
        started = time.perf_counter()
        partial = original.file.with_name(original.file.name + ".partial" + original.file.suffix)
        if original.fmt == "jpeg":
            _grainy_jpeg(original.width, original.height, partial)
        else:
            _png_from(Original("", original.width, original.height, "jpeg", "").file, partial)
        partial.rename(original.file)
        print(f"made {original.file.relative_to(ROOT)} ({original.file.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
    return {o.id: o.file for o in ORIGINALS.values()}


# --- servers and measurement ------------------------------------------------------------------

def _vm_kb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {name: int(value) for name, value in re.findall(r"^((?:Vm|Rss)\w+):\s+(\d+) kB", status, re.M)}


class _Sampler:
    """Peak RssAnon and RssFile of ``pid`` (kB), sampled every ``period`` seconds while ``with``
    is active: VmHWM has only their sum. File-backed pages are those of files mapped by the
    worker (libvips maps a spooled JPEG original to decode it); they are clean and reclaimable."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.pid, self.period = pid, period
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                vm = _vm_kb(self.pid)
            except OSError:
                return
            for name in self.peak:
                self.peak[name] = max(self.peak[name], vm.get(name, 0))
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class Server:
    name: str  # with | without
    thumbor: embedded.Thumbor
    log: Path
    restarts: int = 0
    _worker: int | None = None

    @property
    def url(self) -> str:
        return self.thumbor.url

    def worker(self) -> int:
        """The one worker under the supervisor (thumbor_plugins.serve), waited for if restarting."""
        deadline = time.monotonic() + 30
        while True:
            found = _children(self.thumbor.process.popen.pid)
            if len(found) == 1:
                if self._worker is not None and found[0] != self._worker:
                    self.restarts += 1
                    print(f"!! the {self.name} server's worker was restarted ({self._worker} -> {found[0]})",
                          flush=True)
                self._worker = found[0]
                return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: expected one worker, found {found}")
            time.sleep(0.1)


def thumbor_env(s3: embedded.S3Server, derived: str, **overrides: str) -> dict[str, str]:
    """The shipped settings, with only what a deployment must set: this process's environment is
    stripped of every Thumbor/imgstack/AWS setting first."""
    return _environ_without_settings() | {
        "SECURITY_KEY": SECURITY_KEY,
        "IMGSTACK_S3_ENDPOINT_URL": s3.endpoint_url,
        "IMGSTACK_S3_ACCESS_KEY": s3.access_key,
        "IMGSTACK_S3_SECRET_KEY": s3.secret_key,
        "IMGSTACK_ALLOWED_BUCKETS": BUCKET,
        "IMGSTACK_DERIVED_BUCKET": derived,
        "IMGSTACK_PROCESSES": "1",
    } | overrides


@dataclass
class Sample:
    server: str
    original: str
    kind: str  # first miss | later miss | warm-up | hit | ...
    path: str
    status: int
    latency_ms: float
    cpu_ms: float
    rss_before_mb: float
    peak_growth_mb: float
    peak_mb: float  # VmHWM during the request
    s3_cpu_ms: float  # the S3 server's (SeaweedFS) CPU during the request
    #: peak growth of anonymous and of file-backed resident memory, sampled every 20 ms (their
    #: sum can miss a peak shorter than that; peak_growth_mb cannot)
    anon_growth_mb: float
    file_growth_mb: float
    body_bytes: int  # size of the response body
    output: str  # WxH of the response, or its error text
    content_type: str = ""
    psnr_db: float | None = None  # against the same URL rendered by the "without" server
    body: bytes = field(default=b"", repr=False)


def _settle(pids: Callable[[], set[int]], quiet: float = 0.25, limit: float = 10.0) -> None:
    """Waits until the CPU time of ``pids`` stops moving (work after the response: storing the
    result, the S3 server finishing its side) or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pids())
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pids())
        if now == last:
            return
        last = now


class Bench:
    def __init__(self, servers: dict[str, Server], s3_pid: int, timeout: float, budget: float) -> None:
        import httpx

        self.servers = servers
        self.s3_pids = lambda: tree([s3_pid])
        self.client = httpx.Client(timeout=timeout)
        self.deadline = time.monotonic() + budget
        self.samples: list[Sample] = []
        self.bodies: dict[tuple[str, str], bytes] = {}  # (server, path) -> response body

    def url(self, server: Server, original: Original, size: int, filters: str = "") -> tuple[str, str]:
        url = build_url(f"{BUCKET}/{original.key}", key=SECURITY_KEY, base=server.url, width=size, height=size,
                        fit_in=True, filters=filters)
        return url, url[len(server.url):].split("/", 2)[2]

    def get(self, name: str, original: Original, kind: str, size: int, filters: str = "",
            keep: bool = False) -> Sample:
        from PIL import Image

        if time.monotonic() > self.deadline:
            raise TimeoutError("the run's time budget (--budget) is spent")
        server = self.servers[name]
        url, path = self.url(server, original, size, filters)
        pid = server.worker()
        before = _vm_kb(pid)
        rss_before = before["VmRSS"]
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        cpu_before, s3_before = cpu_seconds([pid]), cpu_seconds(self.s3_pids())
        started = time.perf_counter()
        with _Sampler(pid) as sampled:
            try:
                response = self.client.get(url, headers=ACCEPT)
                status, body, ctype = response.status_code, response.content, response.headers.get("content-type", "")
            except Exception as error:  # noqa: BLE001 - recorded as a failed sample
                status, body, ctype = 0, str(error).encode(), ""
            latency = time.perf_counter() - started
            _settle(lambda: {pid} | self.s3_pids())
        if server.worker() != pid:
            raise RuntimeError(f"the {name} server's worker died during {path}: see {server.log}")
        vm = _vm_kb(pid)
        try:
            output = "x".join(map(str, Image.open(io.BytesIO(body)).size)) if status == 200 else body[:200].decode(
                errors="replace")
        except Exception as error:  # noqa: BLE001
            output = f"undecodable: {error}"
        sample = Sample(name, original.id, kind, path, status, round(latency * 1000, 1),
                        round((cpu_seconds([pid]) - cpu_before) * 1000), round(rss_before / 1024, 1),
                        round((vm["VmHWM"] - rss_before) / 1024, 1), round(vm["VmHWM"] / 1024, 1),
                        round((cpu_seconds(self.s3_pids()) - s3_before) * 1000),
                        round(max(0, sampled.peak["RssAnon"] - before["RssAnon"]) / 1024, 1),
                        round(max(0, sampled.peak["RssFile"] - before["RssFile"]) / 1024, 1), len(body), output, ctype,
                        body=body if keep and status == 200 else b"")
        self.samples.append(sample)
        print(f"  {SERVER_LABEL[name]:>17} {original.id:>8} {kind:<22} {path[:60]:<60} {status} "
              f"{sample.latency_ms:8.0f} ms {sample.cpu_ms:6.0f} cpu-ms (s3 {sample.s3_cpu_ms:4.0f}) "
              f"+{sample.peak_growth_mb:6.1f} MB (rss {sample.rss_before_mb:.0f}, peak {sample.peak_mb:.0f}) {output}",
              flush=True)
        return sample

    def series(self, name: str, original: Original, requests: list[tuple[str, int, str]]) -> None:
        """``requests`` (kind, fit-in size, filters) on one server, one after the other; the
        bodies are kept for :meth:`fidelity`."""
        for kind, size, filters in requests:
            sample = self.get(name, original, kind, size, filters, keep=True)
            if sample.body:
                self.bodies[(name, sample.path)] = sample.body
                sample.body = b""

    def fidelity(self, original: Original) -> None:
        """Each "with" render of ``original`` gets its PSNR against the "without" server's
        render of the same URL (a render from the original)."""
        for sample in self.samples:
            if sample.server == "with" and sample.original == original.id and sample.status == 200:
                reference = self.bodies.get(("without", sample.path))
                mine = self.bodies.get(("with", sample.path))
                if reference and mine:
                    sample.psnr_db = psnr(mine, reference)


def psnr(a: bytes, b: bytes) -> float | None:
    """PSNR of two renders (RGB, 8-bit) in dB; None when their sizes differ; 99 when identical."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        return None
    mse = float(np.mean((x - y) ** 2))
    return 99.0 if mse == 0 else round(10 * np.log10(255**2 / mse), 2)


def _intermediate(s3, derived: str, original: Original) -> dict | None:
    try:
        head = s3.head_object(Bucket=derived, Key=f"{BUCKET}/{original.key}/mezzanine")
    except s3.exceptions.ClientError:
        return None
    return {"bytes": head["ContentLength"], "content_type": head.get("ContentType"),
            "source_etag": head.get("Metadata", {}).get("source-etag")}


# --- the run -----------------------------------------------------------------------------------

def sizes(start: int, count: int, step: int = 4) -> list[int]:
    return [start - step * i for i in range(count)]


def run(bench: Bench, s3, n: int) -> dict:
    """Every row's requests; returns facts checked along the way.

    Per original, the "without" server's requests come first, then the same URLs on the "with"
    server (not interleaved request by request: see the report's note on the S3 server's CPU)."""
    o = ORIGINALS
    facts: dict = {"intermediates": {}, "baseline_rss_mb": {}}

    def both(original: Original, requests: list[tuple[str, int, str]]) -> None:
        for name in ("without", "with"):
            bench.series(name, original, requests)
        facts["intermediates"][original.id] = {name: _intermediate(s3, DERIVED[name], original) for name in DERIVED}
        bench.fidelity(original)

    print("warm-up and the measurement's own check (result-storage hits of a small render)", flush=True)
    for name in ("with", "without"):
        bench.series(name, o["jpeg2560"], [("warm-up", 100, ""), ("warm-up", 96, ""), ("warm-up (miss)", 640, "")]
                     + [("hit", 640, "")] * 3)
        facts["baseline_rss_mb"][name] = round(_vm_kb(bench.servers[name].worker())["VmRSS"] / 1024, 1)

    # rows 1 and 2: 16000x12000 JPEG and PNG -> fit-in/800x800
    for original in (o["jpeg192"], o["png192"]):
        print(f"{original.label} -> fit-in/800x800", flush=True)
        both(original, [("first miss", 800, "")] + [("later miss", size, "") for size in sizes(796, n)]
             + [("later miss, quality(95)", size, "quality(95)") for size in sizes(798, n)])

    # row 5's references: 2560-pixel originals (no intermediate: within the cap), new sizes
    print("2560x1920 JPEG and PNG -> fit-in/800x800, misses of new sizes", flush=True)
    for original in (o["jpeg2560"], o["png2560"]):
        both(original, [("later miss", size, "") for size in sizes(796, n)])

    # row 3: 300 MP vs 24 MP JPEG -> fit-in/2560x2560
    print("24 MP and 300 MP JPEG -> fit-in/2560x2560", flush=True)
    both(o["jpeg24"], [("miss", size, "") for size in sizes(2560, n)])
    both(o["jpeg300"], [("first miss", 2560, "")] + [("later miss", size, "") for size in sizes(2556, n)])

    # row 4: 300 MP PNG, served at all, in bounded memory
    print("300 MP PNG -> fit-in/2560x2560 and fit-in/800x800", flush=True)
    both(o["png300"], [("first miss", 2560, "")] + [("later miss", size, "") for size in sizes(2556, n)]
         + [("later miss", size, "") for size in sizes(800, n)])
    return facts


# --- probes outside the servers ------------------------------------------------------------

def s3_probe(s3, s3_pids: Callable[[], set[int]], original: Original, repeats: int = 3) -> dict:
    """What the S3 server spends when a client opens a GET of a huge original, reads its first
    256 KiB and drops the connection (as the loader does before it renders from the
    intermediate), against a ranged GET of the same 256 KiB: ``repeats`` of each in a row, after
    a full read of the original (as a render without the intermediate makes)."""
    def measured(action: Callable[[], None]) -> dict:
        before, started = cpu_seconds(s3_pids()), time.perf_counter()
        action()
        latency = time.perf_counter() - started
        _settle(s3_pids)
        return {"latency_ms": round(latency * 1000, 1), "s3_cpu_ms": round((cpu_seconds(s3_pids()) - before) * 1000)}

    def full() -> None:
        s3.get_object(Bucket=BUCKET, Key=original.key)["Body"].read()

    def peek_and_drop() -> None:
        body = s3.get_object(Bucket=BUCKET, Key=original.key)["Body"]
        body.read(256 * 1024)
        body.close()

    def ranged() -> None:
        s3.get_object(Bucket=BUCKET, Key=original.key, Range="bytes=0-262143")["Body"].read()

    found: dict = {"original": original.id, "full read": []}
    for label, action in (("open, read 256 KiB, drop", peek_and_drop), ("ranged GET of 256 KiB", ranged)):
        found["full read"].append(measured(full))
        found[label] = [measured(action) for _ in range(repeats)]
    return found


def decode_estimates() -> dict[str, float]:
    """MB that :func:`thumbor_plugins.limits.decode_bytes` estimates for each original under the
    shipped caps (what IMGSTACK_MAX_DECODE_MEMORY is compared with)."""
    from thumbor_plugins import limits

    caps = limits.Limits()
    found = {}
    for key, original in ORIGINALS.items():
        size = limits.declared(original.file)
        if size is not None:
            found[key] = round(limits.decode_bytes(size, caps) / MIB, 1)
    return found


def library_floor(repeats: int = 3) -> dict:
    """The bare library's time for the goal-3/4 thumbnails, in this process with no server
    running: ``pyvips.Image.thumbnail`` of the file to fit 2560x2560 (JPEG shrink-on-load,
    sequential PNG), written to a JPEG/PNG buffer. Wall and CPU (all threads) in ms, medians."""
    import pyvips

    floor = {}
    for key in ("jpeg24", "jpeg300", "png300"):
        original = ORIGINALS[key]
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            image = pyvips.Image.thumbnail(str(original.file), 2560, height=2560)
            image.jpegsave_buffer(Q=75) if original.fmt == "jpeg" else image.pngsave_buffer()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        floor[key] = {"wall_ms": round(statistics.median(walls)), "cpu_ms": round(statistics.median(cpus))}
    return floor


# --- summary and report ---------------------------------------------------------------------------

def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Cell:
    """Medians (and worst) of one server x original x kind (x output size class)."""

    n: int
    ok: int
    statuses: list[int]
    latency_ms: float | None
    cpu_ms: float | None
    s3_cpu_ms: float | None
    growth_mb: float | None
    growth_max_mb: float | None
    peak_max_mb: float | None
    anon_growth_max_mb: float | None
    file_growth_max_mb: float | None
    psnr_db: float | None = None
    psnr_min_db: float | None = None


def cell(samples: list[Sample], server: str, original: str, kinds: tuple[str, ...], fit: int | None = None) -> Cell:
    """``fit``: only requests whose fit-in box is within 40 px of it (the 800 or the 2560 class)."""
    chosen = [s for s in samples if s.server == server and s.original == original and s.kind in kinds
              and (fit is None or abs(int(s.path.split("/")[1].split("x")[0]) - fit) <= 40)]
    ok = [s for s in chosen if s.status == 200]
    psnrs = [s.psnr_db for s in ok if s.psnr_db is not None]
    return Cell(len(chosen), len(ok), sorted({s.status for s in chosen}),
                _median([s.latency_ms for s in ok]), _median([s.cpu_ms for s in ok]),
                _median([s.s3_cpu_ms for s in ok]),
                _median([s.peak_growth_mb for s in ok]), max((s.peak_growth_mb for s in ok), default=None),
                max((s.peak_mb for s in ok), default=None), max((s.anon_growth_mb for s in ok), default=None),
                max((s.file_growth_mb for s in ok), default=None), _median(psnrs), min(psnrs, default=None))


def summarize(samples: list[Sample]) -> dict:
    s = samples
    out: dict = {"row1": {}, "row2": {}, "row3": {}, "row4": {}, "row5": {}, "hits": {}}
    for original in ("jpeg192", "png192"):
        for server in ("without", "with"):
            out["row1"][f"{original}/{server}"] = {
                "first miss": asdict(cell(s, server, original, ("first miss",))),
                "later misses": asdict(cell(s, server, original, ("later miss",))),
            }
        out["row2"][original] = {
            "default quality": asdict(cell(s, "with", original, ("later miss",))),
            "quality(95)": asdict(cell(s, "with", original, ("later miss, quality(95)",))),
        }
    for server in ("without", "with"):
        out["row3"][server] = {
            "jpeg24": asdict(cell(s, server, "jpeg24", ("miss",))),
            "jpeg300 first miss": asdict(cell(s, server, "jpeg300", ("first miss",))),
            "jpeg300 later misses": asdict(cell(s, server, "jpeg300", ("later miss",))),
        }
        out["row4"][server] = {
            "first miss fit-in/2560x2560": asdict(cell(s, server, "png300", ("first miss",))),
            "later misses fit-in/2556x2556...": asdict(cell(s, server, "png300", ("later miss",), fit=2560)),
            "later misses fit-in/800x800...": asdict(cell(s, server, "png300", ("later miss",), fit=800)),
        }
        out["row5"][server] = {original: asdict(cell(s, server, original, ("later miss",)))
                               for original in ("jpeg2560", "png2560", "jpeg192", "png192")}
        out["hits"][server] = asdict(cell(s, server, "jpeg2560", ("hit",)))
    # renders from the original: the worst peak RSS growth per original on the "without" server
    out["decode_growth_max_mb"] = {key: max((x.peak_growth_mb for x in s if x.server == "without"
                                             and x.original == key and x.status == 200), default=None)
                                   for key in ORIGINALS}
    return out


#: a log line's time stamp, left out when lines are counted by message
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d+)? ")


def log_problems(log: Path) -> dict[str, int]:
    """Warnings, errors and tracebacks of a Thumbor log, counted by message (the shutdown's own
    "Caught signal" warnings left out)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {f"(no log at {log})": 1}
    counts: dict[str, int] = {}
    for line in lines:
        if re.search(r"ERROR|CRITICAL|WARNING|^Traceback", line) and "Caught signal" not in line:
            message = _STAMP.sub("", line)
            counts[message] = counts.get(message, 0) + 1
    return counts


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _mb(value: float | None) -> str:
    """MB, a growth a hair below zero (RSS fell between the two reads) shown as 0."""
    return "—" if value is None else f"{max(0.0, value):,.0f} MB"


def _db(value: float | None) -> str:
    return "—" if value is None else ("identical" if value >= 99 else f"{value:.1f} dB")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _ratio_verdict(ratio: float | None, goal: float, sign: str = "<") -> str:
    if ratio is None:
        return "not measured"
    if ratio < goal or (sign == "≤" and ratio <= goal):
        return f"**met** ({ratio:.2f}x {sign} {goal:g}x)"
    return f"**not met**: {ratio:.2f}x, {ratio / goal:.1f}x the bar"


def _rss_verdict(value: float | None) -> str:
    if value is None:
        return "not measured"
    if value < RSS_GOAL_MB:
        return f"**met** ({value:.0f} < {RSS_GOAL_MB:.0f} MB)"
    return f"**not met**: {value:.0f} MB, {value - RSS_GOAL_MB:.0f} MB over"


def _inter_text(info: dict | None) -> str:
    return "none" if info is None else f"{info['content_type']}, {info['bytes'] / 1e6:.1f} MB"


def _top(counts: dict[str, int], shown: int = 4) -> str:
    """The most frequent log messages, with their counts."""
    ordered = sorted(counts.items(), key=lambda item: -item[1])[:shown]
    return ", ".join(f"{count} × `{message[:140]}`" for message, count in ordered) or "none"


def _growth(c: dict) -> str:
    return f"{_mb(c['growth_mb'])} ({_mb(c['growth_max_mb'])})"


def _split(c: dict) -> str:
    return f"{_mb(c['anon_growth_max_mb'])} / {_mb(c['file_growth_max_mb'])}"


def at_a_glance(summary: dict) -> list[str]:
    """One line per goal of the issue, from the tables below."""
    r2, r3, r4, r5 = (summary[k] for k in ("row2", "row3", "row4", "row5"))
    psnr_min = {key: min((c["psnr_min_db"] for c in r2[key].values() if c["psnr_min_db"] is not None), default=None)
                for key in r2}
    psnr_ok = all(v is not None and v >= PSNR_GOAL_DB for v in psnr_min.values())
    raw, ref = r3["without"]["jpeg300 later misses"], r3["without"]["jpeg24"]
    via, via_ref = r3["with"]["jpeg300 later misses"], r3["with"]["jpeg24"]
    png = [c for server in r4.values() for c in server.values()]
    png_worst = max((c["growth_max_mb"] or 0 for c in png), default=0)
    png_ok = all(c["n"] and c["ok"] == c["n"] for c in png)
    five = {key: _ratio(r5["with"][key]["latency_ms"], r5["with"]["jpeg2560"]["latency_ms"])
            for key in ("jpeg192", "png192", "png2560")}
    return [
        "## Goals at a glance",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        f"| fidelity of renders from the intermediate ≥ {PSNR_GOAL_DB:.0f} dB | worst "
        + ", ".join(f"{ORIGINALS[k].label.split(' (')[0].split(' ')[1]} {_db(v)}" for k, v in psnr_min.items())
        + f" | {'**met**' if psnr_ok else '**not met**'} |",
        f"| 300 MP JPEG → fit-in/2560x2560 in < 2x the time of 24 MP | decoding the original: "
        f"{_ratio(raw['latency_ms'], ref['latency_ms']) or 0:.2f}x; from the intermediate: "
        f"{_ratio(via['latency_ms'], via_ref['latency_ms']) or 0:.2f}x | "
        f"{_ratio_verdict(_ratio(raw['latency_ms'], ref['latency_ms']), TIME_RATIO_GOAL)} decoding the original; "
        f"{_ratio_verdict(_ratio(via['latency_ms'], via_ref['latency_ms']), TIME_RATIO_GOAL)} from the intermediate |",
        f"| 300 MP JPEG peak RSS growth < {RSS_GOAL_MB:.0f} MB | worst {_mb(raw['growth_max_mb'])} decoding the "
        f"original | {_rss_verdict(raw['growth_max_mb'])} |",
        f"| 300 MP PNG served at all, in bounded memory | {sum(c['ok'] for c in png)}/{sum(c['n'] for c in png)} "
        f"answered 200, worst growth {_mb(png_worst)} | "
        f"{'**met**' if png_ok and png_worst < RSS_GOAL_MB else '**not met**'} |",
        "| with the intermediate, a miss of a new size for a huge original ≤ 2x a miss for a 2560-pixel original "
        f"(2560x1920 JPEG) | 192 MP JPEG {five['jpeg192'] or 0:.2f}x, 192 MP PNG {five['png192'] or 0:.2f}x (a "
        f"2560x1920 PNG original: {five['png2560'] or 0:.2f}x) | JPEG "
        f"{_ratio_verdict(five['jpeg192'], TIME_RATIO_GOAL, '≤')}; PNG "
        f"{_ratio_verdict(five['png192'], TIME_RATIO_GOAL, '≤')} (section 5: the PNG codec, not the size) |",
        "",
    ]


def report(summary: dict, facts: dict, args: argparse.Namespace, seconds: float) -> list[str]:
    r1, r2, r3, r4, r5 = (summary[k] for k in ("row1", "row2", "row3", "row4", "row5"))
    o = ORIGINALS
    versions = _versions()
    command = COMMAND + (f" --samples {args.samples}" if args.samples != 5 else "")
    lines = [
        "# Huge originals: bounded-memory decode and the stored intermediate (bench/huge.py, issue 17)",
        "",
        f"Command: `{command}` (from a checkout, after `scripts/setup test && scripts/fetch-images`). "
        f"This run: {seconds / 60:.1f} min, of which {facts['corpus_seconds']:.0f} s making or finding the corpus "
        f"and {facts['upload_seconds']:.0f} s uploading it (the first run also spends about 40 s making it).",
        "",
        f"Machine: {os.cpu_count()} cores ({_cpu_model()}), Python {versions['python']}, Thumbor "
        f"{versions['thumbor']}, libvips {versions['libvips']} (pyvips {versions['pyvips']}), Pillow "
        f"{versions['pillow']} · commit {facts['commit']} · {facts['date']}. The S3 server, both Thumbor "
        "servers and the client share these cores: figures are indicative.",
        "",
        "Setup: the embedded S3 server (SeaweedFS) and two Thumbor servers with the shipped config on loopback, "
        "one worker process each (`IMGSTACK_PROCESSES=1`): **with intermediate** (shipped defaults: "
        "`IMGSTACK_MEZZANINE_MIN_PIXELS` 40 MP) and **without** (`IMGSTACK_MEZZANINE_MIN_PIXELS=0`), each "
        "with a derived bucket of its own. One request at a time, `Accept: image/jpeg` (a PNG original is "
        "answered in PNG: the source's format); per original, the *without* server's requests first, then "
        "the same URLs on the *with* server. Per request: wall latency; CPU of the worker and of the S3 "
        "server (utime+stime from /proc, read once both have stopped using CPU, so storing the result "
        "counts); **peak RSS growth** = the worker's VmHWM during the request (reset with `clear_refs` "
        "before it) minus its VmRSS before it; *anon / file* = the largest growth of RssAnon and of RssFile "
        "(sampled every 20 ms; file-backed pages are files mapped by the worker: libvips maps a spooled JPEG "
        "original to decode it, clean and reclaimable page cache); *worker peak* = that VmHWM itself (it "
        "includes memory the worker kept from earlier requests). A *later miss* is a size never requested before "
        "(fit-in/796x796, 792x792, ...) after the first miss of that original; figures are medians of "
        f"{args.samples} such samples, (max) the worst. Raw samples: [`huge.json`](huge.json).",
        "",
        "Corpus (`.cache/images/huge/`, made by the script: Debian's Flow wallpaper upscaled with "
        "gaussian grain (sigma 6), baseline JPEG Q90, PNG compression 3): "
        + ", ".join(f"{orig.label} {facts['corpus'][orig.id] / 1e6:,.1f} MB" for orig in ORIGINALS.values())
        + ".",
        "",
        *at_a_glance(summary),
        "## 1. 16000x12000 JPEG and PNG → fit-in/800x800, with and without the intermediate",
        "",
        "| original | server | request | n | latency | worker CPU | S3 CPU | peak RSS growth (max) | anon / file "
        "(max) | worker peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for original in ("jpeg192", "png192"):
        for server in ("without", "with"):
            for kind in ("first miss", "later misses"):
                c = r1[f"{original}/{server}"][kind]
                n = c["n"] if c["ok"] == c["n"] else f"{c['ok']}/{c['n']} ok"
                lines.append(f"| {o[original].label} | {SERVER_LABEL[server]} | {kind} | {n} | "
                             f"{_ms(c['latency_ms'])} | "
                             f"{_ms(c['cpu_ms'])} | {_ms(c['s3_cpu_ms'])} | {_growth(c)} | {_split(c)} | "
                             f"{_mb(c['peak_max_mb'])} |")
    inter = facts["intermediates"]
    lines += ["", "Intermediates found in each derived bucket after the run: " + "; ".join(
        f"{o[k].label}: with → {_inter_text(v['with'])}, without → {_inter_text(v['without'])}"
        for k, v in inter.items() if o[k].megapixels >= 40) + ".", ""]
    for original in ("jpeg192", "png192"):
        w, wo = r1[f"{original}/with"], r1[f"{original}/without"]
        speed = _ratio(wo["later misses"]["latency_ms"], w["later misses"]["latency_ms"])
        cpu = _ratio(wo["later misses"]["cpu_ms"], w["later misses"]["cpu_ms"])
        first = _ratio(w["first miss"]["latency_ms"], wo["first miss"]["latency_ms"])
        if speed and cpu and first:
            lines.append(f"- {o[original].label}: a later miss with the intermediate is {speed:.1f}x faster and "
                         f"uses {cpu:.0f}x less worker CPU than without; the first miss, which also makes and "
                         f"stores the intermediate, takes {first:.2f}x the time of one without.")
    lines.append("")

    lines += [
        "## 2. Fidelity: later misses with the intermediate vs the same URL rendered from the original",
        "",
        "PSNR (RGB, numpy) of each *with intermediate* render against the *without* server's render of "
        "the same URL (from the original). Goal ≥ 40 dB, judged on the worst sample.",
        "",
        "| original | output | n | PSNR median | PSNR min | goal ≥ 40 dB |",
        "|---|---|---:|---:|---:|---|",
    ]
    for original in ("jpeg192", "png192"):
        for quality, c in r2[original].items():
            shipped = "JPEG, shipped quality (75)" if original.startswith("jpeg") else "PNG (lossless)"
            label = shipped if quality == "default quality" else "`filters:quality(95)`"
            verdict = ("not measured" if c["psnr_min_db"] is None else
                       f"**met** ({c['psnr_min_db']:.1f} dB)" if c["psnr_min_db"] >= PSNR_GOAL_DB else
                       f"**not met**: {c['psnr_min_db']:.1f} dB, {PSNR_GOAL_DB - c['psnr_min_db']:.1f} dB short")
            lines.append(f"| {o[original].label} | {label} | {c['n']} | {_db(c['psnr_db'])} | "
                         f"{_db(c['psnr_min_db'])} | {verdict} |")
    lines.append("")

    floor = facts.get("library_floor", {})
    lines += [
        "## 3. Goal: a 300 MP JPEG → fit-in/2560x2560 in under 2x the time of a 24 MP one, "
        "peak RSS growth under 300 MB",
        "",
        "| server | original | request | n | latency | vs 24 MP (goal < 2x) | worker CPU | peak RSS growth (max) "
        "| anon / file (max) | goal < 300 MB (max) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for server in ("without", "with"):
        ref = r3[server]["jpeg24"]
        for name, c in r3[server].items():
            reference = name == "jpeg24"
            original = "jpeg24" if reference else "jpeg300"
            kind = "misses" if reference else name.split(" ", 1)[1]
            verdict = "(reference)" if reference else _ratio_verdict(_ratio(c["latency_ms"], ref["latency_ms"]),
                                                                     TIME_RATIO_GOAL)
            lines.append(
                f"| {SERVER_LABEL[server]} | {o[original].label} | {kind} | {c['n']} | {_ms(c['latency_ms'])} | "
                f"{verdict} | "
                f"{_ms(c['cpu_ms'])} | {_growth(c)} | {_split(c)} | "
                f"{'' if reference else _rss_verdict(c['growth_max_mb'])} |")
    raw, base = r3["without"]["jpeg300 later misses"], r3["without"]["jpeg24"]
    lines += ["", f"The goal's row is the decode path (*without*, later misses): time "
                  f"{_ratio_verdict(_ratio(raw['latency_ms'], base['latency_ms']), TIME_RATIO_GOAL)}; memory "
                  f"{_rss_verdict(raw['growth_max_mb'])}."]
    if floor:
        f24, f300 = floor["jpeg24"], floor["jpeg300"]
        lines.append(
            f"Bare libvips, in the bench's process with the servers stopped (`pyvips.Image.thumbnail` of the file "
            f"to 2560, shrink-on-load, JPEG encode; median of 3): 24 MP {f24['wall_ms']} ms, 300 MP "
            f"{f300['wall_ms']} ms ({_ratio(f300['wall_ms'], f24['wall_ms']):.1f}x; CPU {f24['cpu_ms']} → "
            f"{f300['cpu_ms']} ms). Shrink-on-load skips most of the IDCT but every byte of the file must still be "
            f"entropy-decoded, and the 300 MP file is {facts['corpus']['jpeg300'] / facts['corpus']['jpeg24']:.0f}x "
            "the 24 MP one's bytes: no decode of the original can be within 2x, only a render from the intermediate "
            "(the *with* server's later misses) is.")
    lines.append("")

    lines += [
        "## 4. Goal: a 300 MP PNG served at all, in bounded memory",
        "",
        "| server | request | n | statuses | latency | worker CPU | S3 CPU | peak RSS growth (max) | anon / file (max) "
        "| worker peak |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for server in ("without", "with"):
        for name, c in r4[server].items():
            lines.append(f"| {SERVER_LABEL[server]} | {name} | {c['n']} | {', '.join(map(str, c['statuses']))} | "
                         f"{_ms(c['latency_ms'])} | {_ms(c['cpu_ms'])} | {_ms(c['s3_cpu_ms'])} | {_growth(c)} | "
                         f"{_split(c)} | {_mb(c['peak_max_mb'])} |")
    png_cells = [c for server in r4.values() for c in server.values()]
    served = all(c["n"] and c["ok"] == c["n"] for c in png_cells)
    worst = max((c["growth_max_mb"] or 0 for c in png_cells), default=0)
    decoded = o["png300"].width * o["png300"].height * 3 / MIB
    lines += ["", f"Served at all: **{'met' if served else 'not met'}** "
                  f"({sum(c['ok'] for c in png_cells)} of {sum(c['n'] for c in png_cells)} answered 200). "
                  f"Bounded memory: **{'met' if worst < RSS_GOAL_MB else 'not met'}**, worst peak RSS growth "
                  f"{worst:.0f} MB for {decoded:,.0f} MB of decoded pixels ({worst / decoded:.0%}; goal 3's bar is "
                  f"{RSS_GOAL_MB:.0f} MB)."]
    if floor:
        lines.append("Bare libvips thumbnail of the file to 2560 (PNG encode, median of 3): "
                     f"{floor['png300']['wall_ms']:,} ms.")
    lines.append("")

    jref, pref = r5["with"]["jpeg2560"], r5["with"]["png2560"]
    lines += [
        "## 5. Goal: with the intermediate, a miss of a new size for a huge original costs within 2x a miss for "
        "a 2560-pixel original",
        "",
        "Misses of new sizes, fit-in/796x796 ... ; the 2560x1920 originals get no intermediate (within the cap). "
        "The goal's reference is the 2560x1920 JPEG; the 2560x1920 PNG is there to tell the cost of the "
        "format (a PNG original's intermediate is a 2560x1920 PNG) from the cost of the original's size. "
        "Judged on latency; worker CPU, less sensitive to other work on the machine, is shown beside it.",
        "",
        "| server | original | n | latency | vs 2560 JPEG (goal ≤ 2x) | vs 2560 PNG | worker CPU | CPU vs 2560 JPEG "
        "| S3 CPU | peak RSS growth |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for server in ("with", "without"):
        jr, pr = r5[server]["jpeg2560"], r5[server]["png2560"]
        for original, c in r5[server].items():
            huge = original in ("jpeg192", "png192")
            ratio = _ratio(c["latency_ms"], jr["latency_ms"])
            if original == "jpeg2560":
                goal = "(reference)"
            elif huge and server == "with":
                goal = _ratio_verdict(ratio, TIME_RATIO_GOAL, "≤")
            else:
                goal = f"{ratio:.1f}x" if ratio else "—"
            vs_png = _ratio(c["latency_ms"], pr["latency_ms"])
            cpu_ratio = _ratio(c["cpu_ms"], jr["cpu_ms"])
            lines.append(
                f"| {SERVER_LABEL[server]} | {o[original].label} | {c['n']} | {_ms(c['latency_ms'])} | {goal} | "
                f"{'' if original.endswith('2560') or vs_png is None else f'{vs_png:.1f}x'} | {_ms(c['cpu_ms'])} | "
                f"{'' if original == 'jpeg2560' or cpu_ratio is None else f'{cpu_ratio:.1f}x'} | "
                f"{_ms(c['s3_cpu_ms'])} | "
                f"{_mb(c['growth_mb'])} |")
    lines.append("")
    del jref, pref

    probe = facts.get("s3_probe")
    if probe:
        def spread(label: str, key: str) -> str:
            return ", ".join(str(m[key]) for m in probe[label])
        lines += [
            "## The S3 side of a render from the intermediate",
            "",
            "A worker's first miss of an original opens a GET of the whole original (for its ETag and "
            "header) and reads 256 KiB; when an intermediate made from that version is already stored, it "
            "drops the connection. Later misses of an original the worker knows to be huge ask for the "
            "original's HEAD and the intermediate at once instead (the *with* server's later misses above). "
            "The two ways of reading a header, from the bench's process on "
            f"the same S3 server and the {o[probe['original']].label}: three in a row after a full read of it, "
            "against three ranged GETs of the same 256 KiB (again after a full read); per operation:",
            "",
            "| operation | client latency (ms) | S3 server CPU (ms) |",
            "|---|---|---|",
        ] + [f"| {label} | {spread(label, 'latency_ms')} | {spread(label, 's3_cpu_ms')} |"
             for label in ("open, read 256 KiB, drop", "ranged GET of 256 KiB", "full read")]
        dropped = _median([m["s3_cpu_ms"] for m in probe["open, read 256 KiB, drop"]])
        ranged = _median([m["s3_cpu_ms"] for m in probe["ranged GET of 256 KiB"]])
        lines += ["", f"A dropped GET costs the S3 server {dropped:.0f} ms of CPU (median), a ranged GET "
                      f"{ranged:.0f} ms: "
                      "the gateway keeps reading the object after the client has gone. A drop happens once per "
                      "worker and huge original (its first miss when the intermediate exists: after a restart, "
                      "on another replica); a ranged GET would avoid even that, at the cost of a second request "
                      "on every miss that does read the whole original.", ""]

    hits = summary["hits"]

    lines += [
        "## Checks",
        "",
        "- The measurement: result-storage hits of a small render (2560x1920 JPEG → fit-in/640x640, 3 per server) "
        "grow the worker's peak RSS by "
        + " and ".join(f"{_mb(hits[s]['growth_max_mb'])} at most ({SERVER_LABEL[s]}, median "
                       f"{_ms(hits[s]['latency_ms'])})" for s in hits) + "; worker RSS after warm-up: "
        + ", ".join(f"{SERVER_LABEL[s]} {v:.0f} MB" for s, v in facts["baseline_rss_mb"].items()) + ".",
        "- Decode memory, estimated before decoding (`limits.decode_bytes`, shipped caps) vs the worst peak RSS "
        "growth measured rendering from the original (*without* server): " + ", ".join(
            f"{o[key].label} {facts['decode_estimate_mb'].get(key, 0):.0f} MB vs "
            f"{_mb(summary['decode_growth_max_mb'][key])}"
            for key in ("jpeg192", "png192", "jpeg300", "png300")) + ". Worker peak RSS over the run: "
        + ", ".join(f"{SERVER_LABEL[s]} {v:.0f} MB ({v - facts['baseline_rss_mb'][s]:.0f} MB over its RSS after "
                    "warm-up)" for s, v in facts["worker_peak_mb"].items()) + ".",
        f"- Worker restarts during the run: {facts['restarts']}. Requests not answered 200: "
        f"{facts['failures'] or 'none'}.",
        "- Thumbor logs (warnings and errors, counted by message; logs in `.cache/bench/huge-run/`): "
        + "; ".join(f"{SERVER_LABEL[name]}: {_top(found)}" for name, found in facts["log_problems"].items()) + ".",
    ]
    lines += [f"- {note}" for note in facts.get("notes", [])]
    return lines


@contextlib.contextmanager
def stack(run_dir: Path, originals: Iterable[Original]) -> Iterator[tuple]:
    """The S3 server with ``originals`` uploaded and the two Thumbor servers: yields (S3 server,
    boto3 client, {"with": Server, "without": Server}, upload seconds); stops them all, and
    removes the S3 data (gigabytes of originals), at the end. Logs stay in ``run_dir``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    s3_server = None
    servers: dict[str, Server] = {}
    try:
        s3_server = embedded.start_s3(run_dir / "s3", host=HOST)
        embedded.ensure_buckets(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key,
                                [BUCKET, *DERIVED.values()])
        s3 = s3_client(s3_server)
        uploading = time.perf_counter()
        for original in originals:
            s3.upload_file(str(original.file), BUCKET, original.key,
                           ExtraArgs={"ContentType": f"image/{original.fmt}"})
        uploaded = time.perf_counter() - uploading
        print(f"uploaded the corpus in {uploaded:.0f} s", flush=True)
        for name, derived in DERIVED.items():
            overrides = {"IMGSTACK_MEZZANINE_MIN_PIXELS": "0"} if name == "without" else {}
            log = run_dir / f"thumbor-{name}.log"
            servers[name] = Server(name, embedded.start_thumbor(thumbor_env(s3_server, derived, **overrides), log), log)
        yield s3_server, s3, servers, uploaded
    finally:
        for server in servers.values():
            server.thumbor.stop()
        if s3_server is not None:
            s3_server.stop()
        shutil.rmtree(run_dir / "s3", ignore_errors=True)


# --- main ----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="misses of new sizes per row (>= 5 for the report)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--budget", type=float, default=3600, help="seconds all requests may take")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every server is stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not SOURCE.exists():
        print("run scripts/fetch-images first (it puts flow-5120x2880.jpg in .cache/images/)", file=sys.stderr)
        return 2
    if os.geteuid() != 0 and not os.access("/proc/self/clear_refs", os.W_OK):
        print("peak RSS per request needs write access to /proc/<pid>/clear_refs", file=sys.stderr)
        return 2
    started = time.perf_counter()
    files = ensure_corpus()
    facts: dict = {"corpus_seconds": time.perf_counter() - started,
                   "corpus": {k: p.stat().st_size for k, p in files.items()},
                   "commit": _commit(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    with stack(RUN_DIR, ORIGINALS.values()) as (s3_server, s3, servers, uploaded):
        facts["upload_seconds"] = uploaded
        bench = Bench(servers, s3_server.process.popen.pid, args.timeout, args.budget)
        facts |= run(bench, s3, args.samples)
        bench.client.close()
        print("S3 probe: a dropped GET of a huge original vs a ranged GET", flush=True)
        facts["s3_probe"] = s3_probe(s3, bench.s3_pids, ORIGINALS["png192"])
    print("bare libvips, servers stopped", flush=True)
    facts["library_floor"] = library_floor()
    facts["log_problems"] = {name: log_problems(server.log) for name, server in servers.items()}
    facts["decode_estimate_mb"] = decode_estimates()
    facts["worker_peak_mb"] = {name: max(s.peak_mb for s in bench.samples if s.server == name) for name in servers}
    facts["restarts"] = sum(server.restarts for server in servers.values())
    if any("[exif] not a TIFF file" in message for found in facts["log_problems"].values() for message in found):
        facts["notes"] = [
            "The `[exif] not a TIFF file` errors (each with a traceback) come from every render of a PNG original "
            "or PNG intermediate whose file has an eXIf chunk (the corpus PNGs carry the EXIF of the JPEG they were "
            "made from): the libvips engine hands Thumbor the EXIF as libvips reads it from a PNG, a bare TIFF "
            "block (`II*\\0`), while Thumbor's ExifOrientationEditor wants JPEG's `Exif\\0\\0` prefix (which "
            "Pillow adds for PNG), so the EXIF orientation of such PNGs is ignored. Not specific to issue 17."]
    facts["failures"] = ", ".join(f"{s.status} for {s.path} ({SERVER_LABEL[s.server]})"
                                  for s in bench.samples if s.status != 200)
    seconds = time.perf_counter() - started
    summary = summarize(bench.samples)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "huge.json").write_text(json.dumps({
        "command": COMMAND, "samples_per_row": args.samples, "seconds": round(seconds),
        "machine": {"cores": os.cpu_count(), "cpu": _cpu_model(), **_versions()},
        "facts": facts, "summary": summary,
        "samples": [{k: v for k, v in asdict(s).items() if k != "body"} for s in bench.samples],
    }, indent=1, default=str) + "\n")
    write_report("huge", report(summary, facts, args, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
