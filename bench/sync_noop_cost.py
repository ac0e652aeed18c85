"""What a no-op ``imgstack sync`` costs, by file count and by bytes (issue: "a no-op run that
costs file count, not bytes").

Two trees, each uploaded once, then ``imgstack sync`` (the CLI, a new process each run, as a user
runs it) timed while nothing has changed:

- ``many``: N small files (default 10,000, 0.5-4 KiB);
- ``large``: M large files (default 4 x 250 MB) of random bytes — uploaded multipart, so a run
  without a hash cache reads every byte twice (MD5, then the multipart ETag).

Wall time and the child's CPU time (user + sys, from ``resource.getrusage``) are the median of
``--runs`` runs. ``--code DIR`` imports ``thumbor_plugins`` from DIR instead of this checkout
(to measure an older copy, "before"). The hash cache goes to a temp dir
(``IMGSTACK_SYNC_CACHE_DIR``), so the first no-op run after the upload is measured as it is.

Side by side, the same no-op with ``aws s3 sync`` (AWS CLI v1 from PyPI, in a virtualenv of its
own under ``.cache/bench/aws-venv``, made on first use), the peer the goal is stated against:
a no-op ``imgstack sync`` under 2x ``aws s3 sync``'s time (``--no-aws`` skips it).

Writes bench/results/sync_noop_cost[-LABEL].json and .md.

Run: .venv/bin/python bench/sync_noop_cost.py [--files 10000] [--large 4] [--large-mb 250] [--runs 3]
     [--code /tmp/old-copy --label before] [--no-aws]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "images"


def make_many(root: Path, n: int) -> int:
    total = 0
    for i in range(n):
        folder = root / f"d{i // 100:03}"
        folder.mkdir(parents=True, exist_ok=True)
        data = os.urandom(512 + (i * 37) % 3584)
        (folder / f"img {i:05}.jpg").write_bytes(data)
        total += len(data)
    return total


def make_large(root: Path, n: int, mb: int) -> int:
    root.mkdir(parents=True, exist_ok=True)
    block = 4 << 20
    for i in range(n):
        with open(root / f"big{i}.avif", "wb") as out:
            written = 0
            while written < mb * 1_000_000:
                chunk = os.urandom(min(block, mb * 1_000_000 - written))
                out.write(chunk)
                written += len(chunk)
    return n * mb * 1_000_000


def timed_cli(cmd: list[str], env: dict, runs: int) -> dict:
    walls, cpus, last = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if done.returncode != 0:
            raise SystemExit(f"sync failed ({done.returncode}): {done.stderr}")
        last = (done.stderr.strip().splitlines() or [""])[-1]
    return {"wall_s": [round(w, 3) for w in walls], "cpu_s": [round(c, 3) for c in cpus],
            "median_wall_s": round(statistics.median(walls), 3), "median_cpu_s": round(statistics.median(cpus), 3),
            "last": last}


def aws_cli() -> Path:
    """The ``aws`` command of a virtualenv of its own (the project's botocore is newer than the
    one awscli v1 pins)."""
    venv = ROOT / ".cache" / "bench" / "aws-venv"
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli>=1.36,<2"], check=True)
    return aws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", type=Path, default=ROOT, help="folder holding the thumbor_plugins to measure")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-aws", action="store_true", help="do not time aws s3 sync beside it")
    args = parser.parse_args()
    aws = None if args.no_aws else aws_cli()
    sys.path.insert(0, str(ROOT))
    from thumbor_plugins import embedded

    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="imgstack-bench-") as tmp:
        tmp_path = Path(tmp)
        server = embedded.start_s3(tmp_path / "s3")
        try:
            embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key, [BUCKET])
            env = {**os.environ, "AWS_ENDPOINT_URL": server.endpoint_url, "AWS_ACCESS_KEY_ID": server.access_key,
                   "AWS_SECRET_ACCESS_KEY": server.secret_key, "AWS_REGION": "us-east-1",
                   "PYTHONPATH": str(code), "IMGSTACK_SYNC_CACHE_DIR": str(tmp_path / "cache")}
            results = {}
            for name, make in (("many", lambda r: make_many(r, args.files)),
                               ("large", lambda r: make_large(r, args.large, args.large_mb))):
                root = tmp_path / name
                nbytes = make(root)
                cmd = [sys.executable, "-c", "from thumbor_plugins.cli import main; main()", "sync", str(root),
                       f"s3://{BUCKET}/{name}/", "-q"]
                start = time.perf_counter()
                first = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if first.returncode != 0:
                    raise SystemExit(f"first upload failed ({first.returncode}): {first.stderr[-2000:]}")
                upload_s = time.perf_counter() - start
                # -q prints no summary: time without it, but check the last run says "unchanged"
                stats = timed_cli(cmd[:-1], env, args.runs)
                count = args.files if name == "many" else args.large
                assert stats["last"].startswith("uploaded 0, deleted 0, unchanged"), stats["last"]
                results[name] = {"files": count, "bytes": nbytes, "initial_upload_s": round(upload_s, 1), **stats}
                print(f"{name:6} {count} files {nbytes} bytes: no-op median {stats['median_wall_s']}s wall, "
                      f"{stats['median_cpu_s']}s CPU  runs {stats['wall_s']}  [{stats['last']}]", flush=True)
                if aws is not None:
                    # the same bucket prefix, already in step: aws compares size and mtime
                    aws_cmd = [str(aws), "s3", "sync", str(root), f"s3://{BUCKET}/{name}/",
                               "--endpoint-url", server.endpoint_url, "--only-show-errors"]
                    subprocess.run(aws_cmd, env=env, check=True, capture_output=True)  # its first run may copy
                    aws_stats = timed_cli(aws_cmd, env, args.runs)
                    results[name]["aws"] = {k: aws_stats[k] for k in ("median_wall_s", "median_cpu_s", "wall_s")}
                    results[name]["ratio_to_aws"] = round(stats["median_wall_s"] / aws_stats["median_wall_s"], 2)
                    print(f"{name:6} aws s3 sync no-op median {aws_stats['median_wall_s']}s wall: "
                          f"imgstack / aws = {results[name]['ratio_to_aws']}x", flush=True)
                subprocess.run(["rm", "-rf", str(root)], check=True)
        finally:
            server.stop()
    suffix = f"-{args.label}" if args.label else ""
    report = {"label": args.label or "current", "code": str(code), "runs": args.runs,
              "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                          "os": f"{platform.system()} {platform.release()}"},
              "results": results}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sync_noop_cost{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# No-op `imgstack sync` cost ({report['label']})", "",
             f"CLI process per run, median of {args.runs}; SeaweedFS on loopback; {os.cpu_count()} cores.", "",
             "| tree | files | bytes | no-op wall (s) | no-op CPU (s) | aws s3 sync no-op wall (s) | imgstack / aws |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        aws_wall = r.get("aws", {}).get("median_wall_s", "–")
        lines.append(f"| {name} | {r['files']} | {r['bytes']} | {r['median_wall_s']} | {r['median_cpu_s']} | "
                     f"{aws_wall} | {r.get('ratio_to_aws', '–')}x |")
    (out / f"sync_noop_cost{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
