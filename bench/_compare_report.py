"""bench/results/compare.{md,json,png} from the rows of bench/compare.py."""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

from _compare_load import percentile
from _compare_stacks import COLD, STOCK_REQUIREMENTS, shipped_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BARE = ("pillow", "pyvips")

#: issue 11's bars
BARE_RATIO, HIT_RATIO, HEALTH_P99_MS, P95_OVER_P50 = 0.85, 0.8, 50.0, 2.0
STOCK_RATIO = {"jpeg": 1.2, "png": 2.0}


# --- facts about the run ---------------------------------------------------------------------

def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _versions() -> dict[str, str]:
    import PIL
    import pyvips
    import thumbor

    return {"python": platform.python_version(), "thumbor": thumbor.__version__, "pillow": PIL.__version__,
            "pyvips": pyvips.__version__, "libvips": ".".join(str(pyvips.version(i)) for i in range(3))}


def _corpus_summary(files: dict[str, dict[str, Path]]) -> dict[str, dict]:
    from PIL import Image

    summary = {}
    for name, paths in files.items():
        sizes = sorted({"x".join(map(str, Image.open(p).size)) for p in paths.values()})
        summary[name] = {"files": sorted(paths), "sizes": sizes,
                         "mb": round(sum(p.stat().st_size for p in paths.values()) / 1e6, 1)}
    return summary


# --- tables ----------------------------------------------------------------------------------

def _index(rows: list[dict]) -> dict[tuple[str, int, str], dict]:
    return {(r["shape"], r["concurrency"], r["target"]): r for r in rows}


def _best_bare(index: dict, shape: str, c: int) -> dict | None:
    found = [index[(shape, c, lib)] for lib in BARE if (shape, c, lib) in index and index[(shape, c, lib)]["same_work"]]
    return max(found, key=lambda r: r["rps"], default=None)


def _ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not b["rps"]:
        return None
    return a["rps"] / b["rps"]


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _n(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _shapes(rows: list[dict], section: str) -> list[tuple[str, str]]:
    seen = {}
    for r in rows:
        if r["section"] == section:
            seen.setdefault(r["shape"], r["label"])
    return list(seen.items())


def _concurrencies(rows: list[dict]) -> list[int]:
    return sorted({r["concurrency"] for r in rows})


def throughput_table(rows: list[dict]) -> list[str]:
    index = _index(rows)
    lines = ["| request | c | ours | stock | bare Pillow | bare pyvips | ours / stock | ours / bare best |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, label in _shapes(rows, "miss"):
        for c in _concurrencies(rows):
            ours, stock = index.get((shape, c, "ours")), index.get((shape, c, "stock"))
            cells = [_rps_cell(index.get((shape, c, t))) for t in ("ours", "stock", *BARE)]
            lines.append(f"| {label} | {c} | " + " | ".join(cells)
                         + f" | {_x(_ratio(ours, stock))} | {_x(_ratio(ours, _best_bare(index, shape, c)))} |")
    if any(not r.get("same_work", True) for r in rows):
        lines += ["", "† not the servers' work (libvips' `attention` crop is a saliency measure, not face "
                      "detection): left out of \"bare best\"."]
    return lines


def _rps_cell(row: dict | None) -> str:
    if row is None:
        return "–"
    return _n(row["rps"]) + ("" if row.get("same_work", True) else " †")


def detail_table(rows: list[dict]) -> list[str]:
    lines = ["| request | c | target | p50 ms | p95 ms | p95 / p50 | same, per original | CPU ms/req | S3 CPU ms/req "
             "| peak RSS MB | /healthcheck p99 ms | output |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["section"] != "miss":
            continue
        spread = r["p95_ms"] / r["p50_ms"] if r["p50_ms"] else None
        lines.append(
            f"| {r['label']} | {r['concurrency']} | {r['target']} | {_n(r['p50_ms'])} | {_n(r['p95_ms'])} "
            f"| {_x(spread)} | {_x(r['p95_over_p50_per_original'])} | {_n(r['cpu_ms_per_request'])} "
            f"| {_n(r.get('s3_cpu_ms_per_request'))} "
            f"| {_n(r['peak_rss_mb'], 0)} | {_n(r.get('health_p99_ms'))} | {_formats(r)} |")
    return lines


def per_original_table(rows: list[dict], shape: str, c: int) -> list[str]:
    """Median latency per original of one miss row: where a server's figure comes from when the
    originals of a corpus differ in cost."""
    index = _index(rows)
    targets = [t for t in ("ours", "stock", *BARE) if (shape, c, t) in index]
    if "ours" not in targets:
        return []
    medians = {t: index[(shape, c, t)].get("p50_ms_by_original") or {} for t in targets}
    originals = sorted(set().union(*medians.values()))
    lines = ["| original | " + " | ".join(targets) + " | ours / bare best |",
             "|---|" + "---:|" * (len(targets) + 1)]
    for original in originals:
        bare = [medians[t][original] for t in BARE if original in medians.get(t, {})]
        ours = medians["ours"].get(original)
        ratio = min(bare) / ours if bare and ours else None  # latency: the bare library's over ours
        lines.append(f"| {original} | " + " | ".join(_n(medians[t].get(original)) for t in targets)
                     + f" | {_x(ratio)} |")
    return lines


def _formats(row: dict) -> str:
    text = ", ".join(f"{t.split('/')[-1]} {n}" for t, n in row["content_types"].items())
    errors = ", ".join(f"{status or 'connection'} ×{n}" for status, n in row["errors"].items())
    return text + (f"; **errors: {errors}**" if errors else "")


def hits_table(rows: list[dict]) -> list[str]:
    index = _index(rows)
    lines = ["| c | stack | hit req/s | S3 GET req/s | stack / S3 | p50 / p95 ms | S3 p50 / p95 ms "
             "| CPU ms/req: Thumbor + S3 | S3 GET CPU ms/req |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in sorted({r["concurrency"] for r in rows if r["section"] == "hit"}):
        s3 = index.get(("hits", c, "s3"))
        for name, label in (("ours", "ours (shipped: hot results in memory)"),
                            (COLD, "ours, hot results off (every hit reads S3)")):
            ours = index.get(("hits", c, name))
            if not ours or not s3:
                continue
            lines.append(
                f"| {c} | {label} | {_n(ours['rps'])} | {_n(s3['rps'])} | {_x(_ratio(ours, s3))} "
                f"| {_n(ours['p50_ms'])} / {_n(ours['p95_ms'])} | {_n(s3['p50_ms'])} / {_n(s3['p95_ms'])} "
                f"| {_n(ours['cpu_ms_per_request'])} + {_n(ours['s3_cpu_ms_per_request'])} "
                f"| {_n(s3['cpu_ms_per_request'])} |")
    return lines


# --- goals -----------------------------------------------------------------------------------

def _goal(goal: str, measured: str, holds: bool) -> dict:
    return {"goal": goal, "measured": measured, "holds": holds}


def goals(rows: list[dict], goal_shapes: set[str]) -> list[dict]:
    """Each of issue 11's measurable goals: what was measured and whether it holds. Throughput and
    latency goals are read at the highest concurrency (the server saturated)."""
    index = _index(rows)
    misses = [r for r in rows if r["section"] == "miss"]
    found = []
    if misses:
        top = max(_concurrencies(misses))
        found += _throughput_goals(index, rows, goal_shapes, top)
        found += _latency_goals([r for r in misses if r["concurrency"] == top], top)
    for c in sorted({r["concurrency"] for r in rows if r["section"] == "hit"}):
        ratio = _ratio(index.get(("hits", c, "ours")), index.get(("hits", c, "s3")))
        cold = _ratio(index.get(("hits", c, COLD)), index.get(("hits", c, "s3")))
        if ratio is not None:
            also = f" (hot results off: {cold:.2f}x)" if cold is not None else ""
            found.append(_goal(f"result-storage hit ≥ {HIT_RATIO}x S3 GET (c={c})", f"{ratio:.2f}x{also}",
                               ratio >= HIT_RATIO))
    return found


def _throughput_goals(index: dict, rows: list[dict], goal_shapes: set[str], top: int) -> list[dict]:
    found = []
    for shape, label in _shapes(rows, "miss"):
        ours, best = index.get((shape, top, "ours")), _best_bare(index, shape, top)
        ratio = _ratio(ours, best)
        if shape in goal_shapes and ratio is not None:
            found.append(_goal(f"{label}: ≥ {BARE_RATIO}x bare best (c={top})",
                               f"{ratio:.2f}x ({ours['rps']:.1f} vs {best['rps']:.1f} req/s, {best['target']})",
                               ratio >= BARE_RATIO))
        ratio = _ratio(ours, index.get((shape, top, "stock")))
        if shape in STOCK_RATIO and ratio is not None:
            found.append(_goal(f"{label}: ≥ {STOCK_RATIO[shape]}x stock (c={top})", f"{ratio:.2f}x",
                               ratio >= STOCK_RATIO[shape]))
    return found


def _latency_goals(rows: list[dict], top: int) -> list[dict]:
    """The /healthcheck and tail-latency goals, on our rows. The corpus mixes originals of unequal
    cost (one progressive JPEG among baseline ones), so p95 / p50 is also given per original, and
    the bare libraries' own spread for reference."""
    ours = [r for r in rows if r["target"] == "ours"]
    found = []
    probes = [x for r in ours for x in r.get("health_latencies_ms", [])]
    if probes:
        p99 = percentile(probes, 0.99)
        failed = any(r.get("health_failures") for r in ours)
        found.append(_goal(f"/healthcheck p99 < {HEALTH_P99_MS:.0f} ms while rendering (c={top})",
                           f"{p99:.1f} ms over {len(probes)} probes (max {max(probes):.0f} ms)"
                           + ("; some probes failed" if failed else ""),
                           p99 < HEALTH_P99_MS and not failed))
    spreads = [(r["p95_ms"] / r["p50_ms"], r["label"]) for r in ours if r["p50_ms"]]
    bare = [r["p95_ms"] / r["p50_ms"] for r in rows if r["target"] in BARE and r["same_work"] and r["p50_ms"]]
    if spreads:
        worst, label = max(spreads)
        found.append(_goal(f"p95 ≤ {P95_OVER_P50:.0f}x p50, every miss row (c={top})",
                           f"worst {worst:.2f}x ({label}); the bare libraries' worst: {max(bare, default=0):.2f}x",
                           worst <= P95_OVER_P50))
    per_original = [(r["p95_over_p50_per_original"], r["label"]) for r in ours if r["p95_over_p50_per_original"]]
    if per_original:
        worst, label = max(per_original)
        found.append(_goal(f"the same per original: p95 of latency ÷ its original's median ≤ {P95_OVER_P50:.0f} "
                           f"(c={top})", f"worst {worst:.2f}x ({label})", worst <= P95_OVER_P50))
    return found


def goals_table(found: list[dict]) -> list[str]:
    lines = ["| goal | measured | holds |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['holds'] else '**no**'} |" for g in found]
    return lines


# --- chart -----------------------------------------------------------------------------------

def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = _index(rows)
    panels = [_miss_panel(index, rows, c) for c in _concurrencies([r for r in rows if r["section"] == "miss"])]
    if any(r["section"] == "hit" for r in rows):
        panels.append(_hit_panel(index, rows))
    # panel heights follow their number of bars
    heights = [len(labels) * len(series) for _, labels, series in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1 + 0.25 * sum(heights) + 0.8 * len(panels)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, labels, series) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, labels, series, title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _miss_panel(index: dict, rows: list[dict], c: int) -> tuple[str, list[str], dict[str, list[float]]]:
    shapes = _shapes(rows, "miss")
    series = {"ours": [index.get((s, c, "ours")) for s, _ in shapes],
              "stock": [index.get((s, c, "stock")) for s, _ in shapes],
              "bare best": [_best_bare(index, s, c) for s, _ in shapes]}
    return f"cache misses, concurrency {c}", [label for _, label in shapes], _rps(series)


def _hit_panel(index: dict, rows: list[dict]) -> tuple[str, list[str], dict[str, list[float]]]:
    cs = sorted({r["concurrency"] for r in rows if r["section"] == "hit"})
    series = {"ours": [index.get(("hits", c, "ours")) for c in cs],
              "ours, hot results off": [index.get(("hits", c, COLD)) for c in cs],
              "S3 GET": [index.get(("hits", c, "s3")) for c in cs]}
    return "result-storage hits vs the same bytes straight from S3", [f"hit, c={c}" for c in cs], _rps(series)


def _rps(series: dict[str, list[dict | None]]) -> dict[str, list[float]]:
    return {name: [row["rps"] if row else 0 for row in found] for name, found in series.items()}


def _bars(ax, labels: list[str], series: dict[str, list[float]], title: str) -> None:
    height = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        positions = [j + i * height for j in range(len(labels))]
        bars = ax.barh(positions, values, height=height, label=name)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=7)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("requests per second")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")


# --- the report ------------------------------------------------------------------------------

def write_reports(bench, files: dict[str, dict[str, Path]], seconds: float, *, goal_shapes: set[str],
                  partial: bool) -> None:
    """``goal_shapes``: the miss rows held to the bare-library bar; ``partial``: a quick run or a
    run of some sections only, flagged in the report."""
    args, rows = bench.args, bench.rows
    shipped = shipped_settings()
    found = goals(rows, goal_shapes)
    facts = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cores": args.cores, "commit": _commit(), "versions": _versions(),
        "command": " ".join([".venv/bin/python", "bench/compare.py", *sys.argv[1:]]),
        "options": {"duration_s": args.duration, "max_requests": args.max_requests, "rounds": args.rounds,
                    "goal_rounds": args.goal_rounds, "concurrency": args.concurrency,
                    "sections": args.only, "partial": partial},
        "run_seconds": round(seconds),
        "ours": {"engine": shipped.get("ENGINE"), "engine_threadpool_size": shipped.get("ENGINE_THREADPOOL_SIZE", 0),
                 "processes": bench.processes["ours"]},
        "stock": {"requirements": STOCK_REQUIREMENTS, "processes": bench.processes["stock"]},
        "corpus": _corpus_summary(files),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps({**facts, "goals": found, "rows": rows}, indent=1) + "\n")
    chart(rows, RESULTS / "compare.png")
    report = "\n".join(_markdown(facts, rows, found)) + "\n"
    (RESULTS / "compare.md").write_text(report)
    print(report)


def _tree(processes: list[dict]) -> str:
    """"3 processes at the end of the run: `python imgstack dev` (61 MB), ..."."""
    return f"{len(processes)} process{'es' if len(processes) != 1 else ''} at the end of the run: " + ", ".join(
        f"`{p['command']}` ({p['rss_mb']:.0f} MB)" for p in processes)


def _markdown(facts: dict, rows: list[dict], found: list[dict]) -> list[str]:
    v, options = facts["versions"], facts["options"]
    corpus = "; ".join(f"{name}: {len(c['files'])} files, {', '.join(c['sizes'])} ({c['mb']} MB)"
                       for name, c in facts["corpus"].items())
    lines = [
        "# imgstack vs stock Thumbor vs the bare libraries (bench/compare.py)",
        "",
        f"{facts['date']} · {facts['cpu']}, {facts['cores']} cores · Python {v['python']}, Thumbor {v['thumbor']}, "
        f"Pillow {v['pillow']}, libvips {v['libvips']} · commit {facts['commit']}",
        "",
        f"Command: `{facts['command']}` — each miss row in {options['rounds']} rounds (the rows a goal is "
        f"judged on: {options['goal_rounds']}), in which every target "
        f"in turn gets {options['duration_s']:g} s or {options['max_requests']} requests at most (req/s: the median "
        f"of its rounds; latency and CPU: over all of them); hit rows of {options['duration_s']:g} s; "
        f"the whole run took {facts['run_seconds'] / 60:.1f} min.",
    ]
    if options["partial"]:
        lines += ["", "**A partial or quick run: not the figures to publish.**"]
    lines += [
        "",
        f"- **ours**: `imgstack dev` with only SECURITY_KEY set (shipped defaults: ENGINE = "
        f"`{facts['ours']['engine']}`, ENGINE_THREADPOOL_SIZE = {facts['ours']['engine_threadpool_size']}, "
        f"{_tree(facts['ours']['processes'])}), result storage in S3; per worker, the originals it read "
        "lately kept in memory and confirmed by S3 before each use (If-None-Match), and the results it "
        "served lately kept for 10 s (hot results); a progressive JPEG decoded at 1/8 is read from the "
        "scans that scale uses (see the table per original below).",
        f"- **stock**: {', '.join(facts['stock']['requirements'])} in its own venv, ENGINE_THREADPOOL_SIZE = 2, "
        f"{_tree(facts['stock']['processes'])}, no result storage, originals not cached; the same "
        "qualities, format negotiation, orientation and detectors as config/thumbor.conf.",
        "- **bare**: Pillow (`draft` + `thumbnail`/`ImageOps.fit`, OpenCV faces for smart) and pyvips "
        f"(`thumbnail_buffer`, `attention` for smart) on bytes in memory, in {facts['cores']} worker processes, "
        "min(c, cores) jobs in flight; the same qualities (AVIF at Pillow's default speed 6 = libvips effort 3) "
        "and JPEG and PNG as the servers write them (JPEG: optimized Huffman tables, progressive as "
        "PROGRESSIVE_JPEG asks; PNG: zlib 6, best filter per row; libvips' defaults skip both).",
        f"- Corpus: {corpus}. S3 (SeaweedFS) and every client on loopback.",
        "- Every miss request has a size used nowhere else in the run (W 400-512); JPEG/PNG rows send no "
        "Accept header. Stock Thumbor answers `Accept: image/avif,image/webp` with WebP (it checks WebP "
        "first), so it is sent `Accept: image/avif` in the AVIF row.",
        "- CPU ms/req: user + system time of the server's whole process tree over the row, per request; "
        "S3 CPU: the S3 server's. Peak RSS: sum over the tree (the bare libraries: all workers, each "
        "holding the corpus), sampled every 100 ms; the processes live through the whole run, so it also "
        "holds what earlier rows left allocated. /healthcheck: a new connection every ~100 ms, during one "
        "more round of each highest-concurrency miss row per server, whose requests are in none of the "
        "row's other figures (ten probes a second cost a server about 2% of its CPU, which the bare "
        "libraries do not pay). Requests sent before a row's time is up are awaited and counted.",
        "- p95 / p50 \"per original\": the 95th percentile of each request's latency divided by the median "
        "latency of the requests for the same original (originals differ in cost: a progressive JPEG "
        "among baseline ones).",
        "",
        "## Goals (issue 11)",
        "",
        *goals_table(found),
    ]
    if any(r["section"] == "miss" for r in rows):
        lines += ["", "## Cache misses: requests per second", "", *throughput_table(rows),
                  "", "## Cache misses: latency, CPU, memory", "", *detail_table(rows)]
        per_original = per_original_table(rows, "jpeg", 1)
        if per_original:
            lines += ["", "## JPEG → JPEG, fit-in, c=1: median latency (ms) per original", "",
                      "Ours decodes a progressive JPEG at 1/8 from the scans that scale reads "
                      "(`IMGSTACK_JPEG_SKIP_SCANS`: the same pixels, bit for bit); the bare libraries "
                      "decode all of its scans, as on baseline JPEGs. \"ours / bare best\" here is the "
                      "faster bare library's latency over ours (above 1: ours is faster).", "",
                      *per_original]
    if any(r["section"] == "hit" for r in rows):
        lines += ["", "## Result-storage hits vs the same bytes straight from S3", "",
                  "Our stack serving stored results of JPEG fit-in renders (as shipped, and again with its hot "
                  "results off, so that every hit reads the result storage in S3), against presigned GETs of "
                  "copies of the very bytes it served, through the same keep-alive client loop.", "",
                  *hits_table(rows)]
    lines += ["", "![requests per second](compare.png)"]
    return lines
