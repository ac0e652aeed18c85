"""Soak: the shipped server under a few minutes of mixed, hostile load, with S3 cut and restored.

    .venv/bin/python bench/soak.py [--duration 150] [--concurrency 32]

Starts the embedded S3 server and Thumbor as ``imgstack dev`` runs them (shipped config, every
core), then, from ``--concurrency`` clients on loopback, mixes: result-storage hits, misses (a
size used nowhere else), missing originals (404), expired links (410), bad signatures (403),
malformed paths (400), costly filters (400), unknown filters (400), MinIO events with and without
the token (200/401) — while S3 is stopped for ``--outage`` seconds a third of the way in and
started again on the same port and data.

Prints and writes (``bench/results/soak.{md,json}``): requests by kind and status, unexpected
answers (a 5xx outside the outage and its grace period, any 500, any status a kind never
answers: goal none), p50/p99 latency, and the server's RSS (its whole process tree) after the
warm-up and at the end (goal: growth < 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _compare_load import rss_bytes, tree  # noqa: E402
from thumbor_plugins import embedded  # noqa: E402
from thumbor_plugins.urls import build_url  # noqa: E402

KEY = "soak-security-key-0123456789abcdef-xyz"
TOKEN = "soak-events-token-0123456789"
BUCKET, DERIVED = "images", "images-derived"
#: statuses each kind may answer while S3 is up (while it is down, 502/503/504 are expected too)
EXPECTED = {
    "hit": {200}, "miss": {200}, "missing": {404}, "expired": {410}, "bad_signature": {403},
    "malformed": {400}, "costly": {400}, "unknown_filter": {400}, "event": {200, 503},
    "event_no_token": {401},
}
OUTAGE_STATUSES = {502, 503, 504}
#: seconds after S3 is back during which its effects may still show (pooled connections, retries)
GRACE = 5.0


def originals(count: int) -> dict[str, bytes]:
    rng = random.Random(7)
    files = {}
    for index in range(count):
        width, height = rng.choice([(1600, 1200), (2400, 1600), (1200, 1800)])
        image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(40):  # some structure, so encoders have work
            x, y = rng.randrange(width), rng.randrange(height)
            image.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + rng.randrange(400), y + 200))
        buffer = io.BytesIO()
        fmt = "PNG" if index % 3 == 0 else "JPEG"
        image.save(buffer, fmt, quality=85)
        files[f"soak/{index}.{fmt.lower()}"] = buffer.getvalue()
    return files


class Soak:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.samples: list[tuple[float, str, int, float]] = []  # (t, kind, status, seconds)
        self.outage: tuple[float, float] | None = None
        self.started = 0.0
        self.sizes = iter(range(200, 100_000))
        self.transport_errors: collections.Counter = collections.Counter()

    def url(self, key: str, **options) -> str:  # noqa: ANN003
        return build_url(f"{BUCKET}/{key}", key=KEY, base=self.base, **options)

    def request(self, kind: str) -> tuple[str, str, bytes | None, dict]:
        key = random.choice(self.keys)
        if kind == "hit":
            return "GET", random.choice(self.hits), None, {}
        if kind == "miss":
            return "GET", self.url(key, width=next(self.sizes) % 1500 + 100, height=300, fit_in=True), None, {}
        if kind == "missing":
            return "GET", self.url(f"soak/none-{random.randrange(10**9)}.jpg", width=100, height=100), None, {}
        if kind == "expired":
            return "GET", self.url(key, width=120, height=90, expires_at=int(time.time()) - 60), None, {}
        if kind == "bad_signature":
            good = self.url(key, width=120, height=90)
            return "GET", good.replace(good.split("/")[3], "x" * 28), None, {}
        if kind == "malformed":
            return "GET", f"{self.base}/{'y' * 28}/", None, {}
        if kind == "costly":
            return "GET", self.url(key, width=300, height=200, filters="blur(150)"), None, {}
        if kind == "unknown_filter":
            return "GET", self.url(key, width=300, height=200, filters="Expires(1)"), None, {}
        record = {"eventName": random.choice(["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"]),
                  "s3": {"bucket": {"name": BUCKET}, "object": {"key": f"soak/evented-{random.randrange(20)}.jpg"}}}
        body = json.dumps({"Records": [record]}).encode()
        headers = {"Authorization": f"Bearer {TOKEN}"} if kind == "event" else {}
        return "POST", f"{self.base}/events/minio", body, headers

    async def client(self, http: httpx.AsyncClient, until: float) -> None:
        kinds, weights = zip(*[("hit", 40), ("miss", 12), ("missing", 8), ("expired", 8), ("bad_signature", 8),
                               ("malformed", 5), ("costly", 5), ("unknown_filter", 5), ("event", 2),
                               ("event_no_token", 2)], strict=True)
        while time.monotonic() < until:
            kind = random.choices(kinds, weights)[0]
            method, url, body, headers = self.request(kind)
            started = time.monotonic()
            try:
                response = await http.request(method, url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as error:
                status = 599  # no answer: the connection failed or was closed
                self.transport_errors[type(error).__name__] += 1
            self.samples.append((started - self.started, kind, status, time.monotonic() - started))

    async def load(self, seconds: float) -> None:
        limits = httpx.Limits(max_connections=self.args.concurrency, max_keepalive_connections=self.args.concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            until = time.monotonic() + seconds
            await asyncio.gather(*(self.client(http, until) for _ in range(self.args.concurrency)))

    def cut_s3_later(self) -> None:
        async def cut() -> None:
            await asyncio.sleep(self.args.duration / 3)
            began = time.monotonic() - self.started
            await asyncio.to_thread(self.s3.stop)
            await asyncio.sleep(self.args.outage)
            self.s3 = await asyncio.to_thread(self.start_s3)
            self.outage = (began, time.monotonic() - self.started)

        self.cutter = asyncio.ensure_future(cut())

    def start_s3(self) -> embedded.S3Server:
        return embedded.start_s3(self.run_dir / "s3", s3_port=self.s3_port, access_key=self.access_key,
                                 secret_key=self.secret_key)

    def run(self) -> dict:
        self.s3_port = embedded.free_port(with_grpc=True)
        self.access_key = self.secret_key = None
        self.s3 = self.start_s3()
        self.access_key, self.secret_key = self.s3.access_key, self.s3.secret_key
        embedded.ensure_buckets(self.s3.endpoint_url, self.access_key, self.secret_key, [BUCKET, DERIVED])
        from thumbor_plugins.s3.settings import S3Settings
        from thumbor_plugins.s3.sync import client as s3_client

        s3 = s3_client(S3Settings(endpoint_url=self.s3.endpoint_url, access_key=self.access_key,
                                  secret_key=self.secret_key))
        files = originals(12)
        for key, body in files.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.keys = list(files)
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith(("IMGSTACK_", "AWS_"))},
            "SECURITY_KEY": KEY, "IMGSTACK_EVENTS_TOKEN": TOKEN, "IMGSTACK_ALLOWED_BUCKETS": BUCKET,
            "IMGSTACK_DERIVED_BUCKET": DERIVED, "IMGSTACK_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "IMGSTACK_S3_ACCESS_KEY": self.access_key, "IMGSTACK_S3_SECRET_KEY": self.secret_key,
            "IMGSTACK_ACCESS_LOG": "false",
        }
        thumbor = embedded.start_thumbor(env, self.run_dir / "thumbor.log")
        self.base = thumbor.url
        try:
            self.hits = [self.url(key, width=320, height=240, fit_in=True) for key in self.keys]
            for url in self.hits:
                httpx.get(url, timeout=60).raise_for_status()
            asyncio.run(self.load(self.args.warmup))  # allocations settle before the first reading
            self.samples.clear()
            rss_start = rss_bytes(tree([thumbor.process.popen.pid]))

            async def main() -> None:
                self.started = time.monotonic()
                self.cut_s3_later()
                await self.load(self.args.duration)
                await self.cutter

            asyncio.run(main())
            time.sleep(1.0)
            rss_end = rss_bytes(tree([thumbor.process.popen.pid]))
        finally:
            thumbor.stop()
            self.s3.stop()
        return self.report(rss_start, rss_end)

    def unexpected(self, t: float, seconds: float, kind: str, status: int) -> bool:
        """Not an answer this kind gives, unless S3 was down at some time while it was in flight."""
        if status in EXPECTED[kind]:
            return False
        if status == 500 or status not in OUTAGE_STATUSES:
            return True
        began, ended = self.outage or (0.0, 0.0)
        return t + seconds < began or t > ended + GRACE

    def report(self, rss_start: int, rss_end: int) -> dict:
        by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for _, kind, status, _ in self.samples:
            by_kind[kind][status] += 1
        latencies = sorted(seconds for *_, seconds in self.samples)
        bad = [(round(t, 2), kind, status) for t, kind, status, seconds in self.samples
               if self.unexpected(t, seconds, kind, status)]

        def pct(values: list[float], q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=HERE.parent).stdout.strip(),
            "duration_s": self.args.duration, "concurrency": self.args.concurrency,
            "outage_s": [round(x, 1) for x in self.outage] if self.outage else None,
            "requests": len(self.samples),
            "by_kind": {kind: dict(sorted(counts.items())) for kind, counts in sorted(by_kind.items())},
            "unexpected": len(bad), "unexpected_examples": bad[:10],
            "transport_errors": dict(self.transport_errors),
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
            "rss_start_mb": round(rss_start / 2**20), "rss_end_mb": round(rss_end / 2**20),
            "rss_growth": round(rss_end / rss_start - 1, 3),
        }


def markdown(result: dict) -> str:
    lines = [
        "# Soak (bench/soak.py)", "",
        f"{result['date']} · {result['machine']} · commit {result['commit']}", "",
        f"Command: `.venv/bin/python bench/soak.py --duration {result['duration_s']} "
        f"--concurrency {result['concurrency']}`; S3 stopped from {result['outage_s'][0]} s to "
        f"{result['outage_s'][1]} s of the run.", "",
        "| kind | answers (status: count) |", "|---|---|",
    ]
    for kind, counts in result["by_kind"].items():
        lines.append(f"| {kind} | " + ", ".join(f"{status}: {count}" for status, count in counts.items()) + " |")
    growth = result["rss_growth"] * 100
    lines += [
        "",
        f"- requests: {result['requests']}; p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
        f"- unexpected answers: **{result['unexpected']}** (goal: 0) {result['unexpected_examples'] or ''}",
        f"- no answer at all (status 599 above), by client error: {result['transport_errors'] or 'none'}",
        f"- RSS of the server's process tree: {result['rss_start_mb']} MB after warm-up, "
        f"{result['rss_end_mb']} MB at the end ({growth:+.1f}%; goal < +10%)",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load (default 150)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load before RSS is read (default 20)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds S3 is stopped (default 10)")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="imgstack-soak-") as tmp:
        try:
            result = Soak(args, Path(tmp)).run()
        finally:
            log = Path(tmp) / "thumbor.log"
            if log.exists():  # kept for a look at whatever the numbers show
                (HERE / "results").mkdir(exist_ok=True)
                (HERE / "results" / "soak-thumbor.log").write_bytes(log.read_bytes()[-200_000:])
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "soak.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["unexpected"] == 0 and result["rss_growth"] < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
