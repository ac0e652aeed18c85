"""``imgstack sync``: keep a folder and a bucket prefix in step (logic in :mod:`thumbor_plugins.sync`)."""

from __future__ import annotations

import queue
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from thumbor_plugins.cli.url import _parse_size
from thumbor_plugins.sync import (
    DEFAULT_JOBS,
    Change,
    DeletePolicy,
    Outcome,
    Plan,
    Refused,
    Reporter,
    S3Location,
    Syncer,
    SyncError,
    SyncJob,
)
from thumbor_plugins.sync._cache import HashCache, cache_file
from thumbor_plugins.sync._checksum import Hasher
from thumbor_plugins.sync._location import is_s3
from thumbor_plugins.sync._mime import is_image
from thumbor_plugins.sync._watch import DEFAULT_RECONCILE, Watcher

from .exits import Exit, exit_for, fail
from .options import JsonCommand, emit, endpoint_option, json_option, open_s3, profile_option

_BYTES = re.compile(r"(?P<n>[0-9]+)\s*(?P<unit>|b|k|kb|kib|m|mb|mib|g|gb|gib)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _parse_bytes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``64MiB``, ``64MB`` (binary units too), ``5m`` or a plain number of bytes."""
    match = _BYTES.fullmatch(str(value).strip())
    if not match:
        raise click.BadParameter(f"expected a size like 64MB, 5MiB or 1048576, got {value!r}")
    return int(match["n"]) * _UNITS[match["unit"][:1].lower()]


class _CliReporter(Reporter):
    """Progress bar on a terminal (stderr), failures on stderr, signed URLs on stdout; with
    ``as_json``, the URLs and notices are kept for the run's document instead."""

    def __init__(self, *, bar: bool, verbose: bool, url_for: Callable[[str], str] | None,
                 as_json: bool = False) -> None:
        self.bar_enabled = bar
        self.verbose = verbose
        self.url_for = url_for
        self.as_json = as_json
        self._bar: Any = None
        self._lock = threading.Lock()
        self._noticed: set[str] = set()
        #: this run's signed URLs (key, url) and notices, for the --json document
        self.urls: list[tuple[str, str]] = []
        self.notices: list[str] = []

    def _write(self, text: str, *, err: bool) -> None:
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr if err else sys.stdout)
        else:
            click.echo(text, err=err)

    def start(self, plan: Plan, job: SyncJob) -> None:
        if self.bar_enabled and plan.transfers:
            from tqdm import tqdm

            verb = "uploading" if job.direction == "push" else "downloading"
            self._bar = tqdm(total=plan.transfer_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, desc=f"{verb} {len(plan.transfers)} files", leave=False)

    def progress(self, nbytes: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def notice(self, text: str) -> None:
        if text not in self._noticed:  # --watch runs again and again: say it once
            self._noticed.add(text)
            self.notices.append(text)
            self._write(f"notice: {text}", err=True)

    def done(self, op: str, change: Change, key: str, error: str | None) -> None:
        if error is not None:
            self._write(f"failed to {op} {change.rel!r}: {error}", err=True)
            return
        if self.verbose:
            self._write(f"{op} {change.rel!r} ({change.reason}, {change.size} bytes)", err=True)
        if op == "upload" and self.url_for is not None and is_image(change.rel):
            url = self.url_for(key)
            if self.as_json:
                self.urls.append((key, url))
            else:
                self._write(url, err=False)

    def finish(self, outcome: Outcome) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def document(self, job: SyncJob, outcome: Outcome) -> dict[str, Any]:
        """The ``--json`` fields of a run; the run's URLs and notices are handed over (the next
        run of ``--watch`` starts afresh)."""
        plan = outcome.plan

        def changes(items: tuple[Change, ...]) -> list[dict[str, Any]]:
            return [{"path": c.rel, "size": c.size, "reason": c.reason} for c in items]

        fields = {
            "direction": job.direction, "source": job.source, "dest": job.dest, "dry_run": outcome.dry_run,
            "transferred": sorted(outcome.transferred), "deleted": sorted(outcome.deleted),
            "unchanged": outcome.unchanged, "bytes": outcome.bytes,
            "failures": [{"path": rel, "error": error} for rel, error in outcome.failures],
            "plan": None if plan is None else {"transfers": changes(plan.transfers),
                                               "deletions": changes(plan.deletions)},
            "urls": [{"key": key, "url": url} for key, url in self.urls],
            "notices": list(self.notices),
        }
        self.urls, self.notices = [], []
        return fields


HELP = """Keep a folder and a bucket prefix in step.

\b
  imgstack sync ./photos s3://images/photos/      push: upload new and changed files
  imgstack sync s3://images/photos/ ./photos      pull: download new and changed objects

Files are compared by size, then content (MD5 against the ETag, or the MD5 stored in the
object's metadata for multipart uploads), never by timestamps. The bucket is read with one
listing. Keys are the files' paths relative to the folder, under the prefix, exactly as named.
A hash cache (under $IMGSTACK_SYNC_CACHE_DIR, else $XDG_CACHE_HOME/imgstack/sync, else
~/.cache/imgstack/sync) spares re-reading files whose size, mtime, ctime and inode are
unchanged; --checksum reads them all again. A pull sets each file's mtime to the object's.

A file that cannot be read (unreadable, vanished, changed while read) is reported on its own
line ("failed to read ...") and counted; the rest of the run goes on, and its object is not
deleted. Symlinked folders (unless --follow-symlinks), dangling symlinks and special files are
skipped with one "notice:" line each.

--delete also removes what the source no longer has. It refuses (exit code 2) when the source
is empty, or when it would delete more than --max-delete (default: more than 50% of the
destination and more than 10 entries), unless --force. A missing source folder is always an
error. Paths matching --exclude or a line of the folder's .imgstackignore (gitignore-like
globs, # comments) are neither transferred nor deleted.

Credentials and endpoint: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or a profile: AWS_PROFILE,
--profile), AWS_ENDPOINT_URL (or --endpoint-url), AWS_REGION.

--json prints one JSON document on stdout when the run ends (with --watch: one per run, JSON
Lines); the human lines go to stderr.

\b
Exit codes (the same for every imgstack command):
  0  in step (or nothing to do; --watch stopped by Ctrl-C/SIGTERM)
  1  some files could not be read, or some transfers or deletions failed (each listed on
     stderr; --dry-run too, for files the real run could not read)
  2  usage error, or refused (unsafe --delete, missing source folder)
  3  S3 configuration: unknown profile, no or refused credentials, no such bucket
  4  S3 unreachable
"""


@click.command("sync", help=HELP, cls=JsonCommand)
@click.argument("src")
@click.argument("dest")
@click.option("--delete", is_flag=True, help="Remove from DEST what SRC does not have (default: keep).")
@click.option("--force", is_flag=True, help="Allow --delete to empty DEST or to exceed --max-delete.")
@click.option("--max-delete", metavar="N|P%",
              help="Most deletions allowed without --force: a count (100) or a share of DEST (20%).")
@click.option("-n", "--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out matching paths (repeatable; gitignore syntax, like .imgstackignore).")
@click.option("--checksum", is_flag=True,
              help="Read and hash every file the sizes do not tell apart (ignore the hash cache).")
@click.option("--follow-symlinks", is_flag=True, help="Walk into symlinked folders (default: skip them with a notice).")
@click.option("--watch", is_flag=True, help="After syncing, keep watching the folder and push changes (push only).")
@click.option("--debounce", type=click.IntRange(min=1), default=1600, show_default=True, metavar="MS",
              help="With --watch: upload a file once its size and mtime have not changed for this long.")
@click.option("--reconcile", type=click.FloatRange(min=0.1), default=DEFAULT_RECONCILE, show_default=True,
              metavar="SECONDS", help="With --watch: a full run at least this often, events or not.")
@click.option("--print-urls", is_flag=True, help="Print a signed URL for every uploaded image (stdout).")
@click.option("--key", envvar="SECURITY_KEY", show_envvar=True, help="Signing key for --print-urls.")
@click.option("--base", envvar="IMGSTACK_URL", show_envvar=True, default="", metavar="URL",
              help="Base of the printed URLs, e.g. https://img.example.com")
@click.option("--size", callback=_parse_size, metavar="WxH", help="Size in the printed URLs, e.g. 300x200.")
@click.option("--expires", "expires_in", type=click.IntRange(min=1), metavar="SECONDS",
              help="Lifetime of the printed URLs.")
@click.option("--algorithm", type=click.Choice(["sha1", "sha256"]), default="sha1",
              envvar="IMGSTACK_SIGNATURE_ALGORITHM", show_envvar=True, help="Signature of the printed URLs.")
@endpoint_option
@profile_option
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=DEFAULT_JOBS, show_default=True,
              help="Parallel transfers.")
@click.option("--multipart-threshold", type=str, callback=_parse_bytes, default="64MiB",
              envvar="IMGSTACK_SYNC_MULTIPART_THRESHOLD", show_envvar=True, metavar="SIZE",
              show_default=True, help="Files from this size on are sent in parts.")
@click.option("--part-size", type=str, callback=_parse_bytes, default="16MiB",
              envvar="IMGSTACK_SYNC_PART_SIZE", show_envvar=True, metavar="SIZE",
              show_default=True, help="Part size of multipart uploads (at least 5MiB).")
@click.option("-v", "--verbose", is_flag=True, help="List every transfer and deletion.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary line.")
@json_option
def command(src: str, dest: str, delete: bool, force: bool, max_delete: str | None, dry_run: bool,
            excludes: tuple[str, ...], checksum: bool, follow_symlinks: bool, watch: bool, debounce: int,
            reconcile: float, print_urls: bool, key: str | None,
            base: str, size: tuple[int | None, int | None] | None, expires_in: int | None, algorithm: str,
            endpoint_url: str | None, profile: str | None, jobs: int, multipart_threshold: int, part_size: int,
            verbose: bool, quiet: bool, as_json: bool) -> None:
    if is_s3(src) == is_s3(dest):
        raise click.UsageError("one of SRC and DEST must be a folder and the other s3://BUCKET/PREFIX/")
    direction: Literal["push", "pull"] = "pull" if is_s3(src) else "push"
    if watch and direction == "pull":
        raise click.UsageError("--watch watches a local folder: use it when pushing (SRC is the folder)")
    if watch and dry_run:
        raise click.UsageError("--watch and --dry-run do not go together")
    if print_urls and direction == "pull":
        raise click.UsageError("--print-urls prints URLs of uploaded images: use it when pushing")
    if print_urls and not key:
        raise click.UsageError("--print-urls needs a signing key: set SECURITY_KEY or pass --key")
    try:
        location = S3Location.parse(src if direction == "pull" else dest)
        policy = DeletePolicy.parse(max_delete, force=force)
    except Refused as error:
        raise click.UsageError(str(error)) from None
    folder = Path(dest if direction == "pull" else src).expanduser()
    job = SyncJob(direction, folder, location, delete=delete, dry_run=dry_run, policy=policy,
                  excludes=excludes, jobs=jobs, multipart_threshold=multipart_threshold,
                  part_size=max(part_size, 5 << 20), checksum=checksum, follow_symlinks=follow_symlinks)

    url_for = None
    if print_urls:
        width, height = size or (None, None)

        def url_for(object_key: str) -> str:
            from thumbor_plugins.urls import build_url

            return build_url(f"{location.bucket}/{object_key}", key=key or "", base=base, width=width,
                             height=height, expires_in=expires_in, algorithm=algorithm)

    client = open_s3(endpoint_url=endpoint_url, profile=profile, max_pool_connections=max(32, jobs * 2))
    reporter = _CliReporter(bar=not quiet and sys.stderr.isatty(), verbose=verbose, url_for=url_for,
                            as_json=as_json)
    hasher = Hasher(HashCache.load(cache_file(folder)), verify=checksum)
    syncer = Syncer(job, client, hasher=hasher, reporter=reporter)

    def report(outcome: Outcome) -> None:
        if as_json:
            emit("sync", Exit.OK if outcome.ok else Exit.FAILED, **reporter.document(job, outcome))

    watcher = None
    if watch:
        def show(outcome: Outcome) -> None:
            if outcome.failures or not outcome.plan.empty:  # type: ignore[union-attr]
                if not quiet:
                    click.echo(outcome.summary(), err=True)
                report(outcome)

        def show_error(error: SyncError) -> None:
            click.echo(f"Error: {error}", err=True)
            if as_json:
                emit("sync", exit_for(error), error=str(error))

        watcher = Watcher(syncer, quiet=debounce / 1000, reconcile=reconcile, on_outcome=show, on_error=show_error)

    try:
        outcome = watcher.run_once() if watcher is not None else syncer.run()
    except SyncError as error:
        raise fail(error) from None
    if dry_run and outcome.plan is not None:
        for line in outcome.plan.lines(job.source, job.dest):
            click.echo(line, err=as_json)
    if not quiet:
        click.echo(outcome.summary(), err=True)
    report(outcome)
    if watcher is not None:
        outcome = _watch(watcher, quiet) or outcome
    sys.exit(int(Exit.OK if outcome.ok else Exit.FAILED))


def _watch(watcher: Watcher, quiet: bool) -> Outcome | None:
    """Watch the folder until Ctrl-C or SIGTERM; the :class:`Watcher` decides when to run and
    which files are complete. Returns the last outcome."""
    import watchfiles

    root = watcher.syncer.job.root
    stop = threading.Event()
    previous: dict[int, Any] = {}
    events: queue.Queue[Any] = queue.Queue()

    def feed() -> None:
        # short grouping here: the Watcher's quiet interval decides when a file is complete
        try:
            for changes in watchfiles.watch(root, stop_event=stop, debounce=200, raise_interrupt=False):
                events.put(changes)
        except Exception as error:  # noqa: BLE001 - e.g. the folder vanished: the Watcher says so
            events.put(error)

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    thread = threading.Thread(target=feed, name="imgstack-sync-watch", daemon=True)
    thread.start()
    if not quiet:
        click.echo(f"watching {root} (Ctrl-C to stop)", err=True)
    try:
        last = watcher.watch(events, stop)
    except Refused as error:  # the folder disappeared
        raise fail(error) from None
    finally:
        stop.set()
        thread.join(timeout=10)
        for number, handler in previous.items():
            signal.signal(number, handler)
    if not quiet:
        click.echo("stopped watching", err=True)
    return last
