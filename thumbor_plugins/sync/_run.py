"""One sync run: plan (scan + one listing + content checks), safety check, transfers in a thread
pool sharing one boto3 client, then deletions.

A file that cannot be read (unreadable, vanished, replaced, changed while read) is a failure of
that file only: reported on its own line, counted, never a reason to delete its object; the rest
of the run goes on."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._checksum import (
    COMMON_PART_SIZES,
    MD5_METADATA,
    Checker,
    Hasher,
    LocalFile,
    MiB,
    RemoteObject,
    is_plain_md5,
    open_scanned,
)
from ._ignore import TMP_SUFFIX, IgnoreRules
from ._location import S3Location, rel_is_safe
from ._mime import content_type
from ._plan import Change, DeletePolicy, Direction, Plan, make_plan
from ._sides import ScanReport, list_remote, remote_error, scan_local
from .errors import Refused

log = logging.getLogger("imgstack.sync")

DEFAULT_JOBS = 8
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
_DELETE_BATCH = 1000  # DeleteObjects' maximum
_CHUNK = 256 * 1024


#: this process's umask, read once at import (os.umask both reads and sets it: not from threads)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def inside(root: Path, rel: str) -> Path:
    """``root/rel`` for a pull, refusing (``OSError``, reported for that file) a path whose folders
    leave ``root``: a symlinked folder already in the destination (``photos -> /etc``) must not
    carry a download out of it."""
    if not rel_is_safe(rel):
        raise OSError(f"{rel!r} cannot be a file inside the folder")
    folder = root
    for part in rel.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise OSError(f"{folder} is a symlink or not a folder: not writing through it")
    return root.joinpath(*rel.split("/"))


@dataclass(frozen=True)
class SyncJob:
    """What to sync. ``root`` is the local folder, whatever the direction."""

    direction: Direction
    root: Path
    location: S3Location
    delete: bool = False
    dry_run: bool = False
    policy: DeletePolicy = DeletePolicy()
    excludes: tuple[str, ...] = ()
    jobs: int = DEFAULT_JOBS
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    #: hash every file the sizes do not tell apart, whatever the hash cache says (``--checksum``)
    checksum: bool = False
    #: walk into symlinked folders (each real folder once) instead of skipping them with a notice
    follow_symlinks: bool = False

    @property
    def source(self) -> str:
        return str(self.root) if self.direction == "push" else str(self.location)

    @property
    def dest(self) -> str:
        return str(self.location) if self.direction == "push" else str(self.root)


@dataclass
class Outcome:
    direction: Direction
    transferred: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """``uploaded N, deleted N, unchanged N, bytes N`` (``downloaded`` when pulling)."""
        verb = "uploaded" if self.direction == "push" else "downloaded"
        if self.dry_run and self.plan is not None:
            verb = "would upload" if self.direction == "push" else "would download"
            return (f"{verb} {len(self.plan.transfers)}, would delete {len(self.plan.deletions)}, "
                    f"unchanged {self.plan.unchanged}, bytes {self.plan.transfer_bytes} (dry run: nothing changed)")
        text = (f"{verb} {len(self.transferred)}, deleted {len(self.deleted)}, unchanged {self.unchanged}, "
                f"bytes {self.bytes}")
        return text + (f", failed {len(self.failures)}" if self.failures else "")


class Reporter:
    """Hooks for progress and results; the default does nothing. ``progress`` is called from
    worker threads; the others from the thread running :meth:`Syncer.run`."""

    def start(self, plan: Plan, job: SyncJob) -> None: ...

    def progress(self, nbytes: int) -> None: ...

    def notice(self, text: str) -> None:
        """Something skipped on purpose (a symlinked folder, a dangling symlink): not a failure."""

    def done(self, op: str, change: Change, key: str, error: str | None) -> None: ...

    def finish(self, outcome: Outcome) -> None: ...


class Syncer:
    """Runs a :class:`SyncJob` with one boto3 client (thread-safe, shared by the workers).
    Keep one Syncer for repeated runs (``--watch``): its :class:`Hasher` cache then spares
    re-hashing unchanged files (give it a persistent :class:`HashCache` to spare them across
    runs). The default hasher's cache is in memory only."""

    def __init__(self, job: SyncJob, client: Any, *, hasher: Hasher | None = None,
                 reporter: Reporter | None = None) -> None:
        self.job = job
        self.client = client
        self.hasher = hasher or Hasher(verify=job.checksum)
        self.reporter = reporter or Reporter()
        self.checker = Checker(self.hasher, self._stored_md5, (job.part_size, *COMMON_PART_SIZES))
        self._local: dict[str, LocalFile] = {}
        self._remote: dict[str, RemoteObject] = {}
        self._scan = ScanReport()

    # -- planning -------------------------------------------------------------------------------

    def plan(self, hold: Callable[[LocalFile], bool] | None = None) -> Plan:
        """Read both sides and compare. Raises Refused (source folder missing) or RemoteError.
        Local files for which ``hold`` is true are left out of this run on both sides
        (:attr:`Plan.held`: not hashed, transferred nor deleted). Paths that could not be read
        are :attr:`Plan.skipped` and protect their objects from deletion; with ``dry_run``, the
        files to upload are opened too, so the plan reports those the real run could not read."""
        job = self.job
        if job.direction == "push" and not job.root.is_dir():
            raise Refused(f"source folder {job.root} does not exist or is not a folder")
        if job.direction == "pull" and job.root.exists() and not job.root.is_dir():
            raise Refused(f"destination {job.root} is not a folder")
        rules = IgnoreRules.for_folder(job.root, job.excludes)
        self._scan = scan = ScanReport()
        self._local = (scan_local(job.root, rules, scan, follow_symlinks=job.follow_symlinks)
                       if job.root.is_dir() else {})
        for text in scan.notices:
            self.reporter.notice(text)
        self._remote = list_remote(self.client, job.location, rules)
        local, remote = self._local, self._remote
        held: tuple[Change, ...] = ()
        if hold is not None and job.direction == "push":
            held = tuple(Change(rel, f.size, "settling") for rel, f in sorted(local.items()) if hold(f))
            out = {c.rel for c in held}
            local = {rel: f for rel, f in local.items() if rel not in out}
            remote = {rel: o for rel, o in remote.items() if rel not in out}
        with ThreadPoolExecutor(max_workers=job.jobs) as pool:
            plan = make_plan(job.direction, local, remote, delete=job.delete,
                             differs=self.checker.differs, map_=pool.map)
            unreadable = tuple(Change(rel, 0, message) for rel, message in scan.problems)
            transfers = plan.transfers
            if job.dry_run and job.direction == "push":
                probed = dict(zip((c.rel for c in transfers), pool.map(self._probe, transfers), strict=True))
                unreadable += tuple(Change(c.rel, c.size, problem) for c in transfers if (problem := probed[c.rel]))
                transfers = tuple(c for c in transfers if not probed[c.rel])
        deletions = plan.deletions
        if job.direction == "push":
            # an incomplete view of the folder must not delete what we could not read
            deletions = tuple(c for c in deletions if not scan.protects(c.rel))
        return replace(plan, transfers=transfers, deletions=deletions,
                       skipped=tuple(sorted(plan.skipped + unreadable, key=lambda c: c.rel)), held=held)

    def _probe(self, change: Change) -> str | None:
        """Why the file to upload cannot be read, or None: open it and read a byte, as the upload
        would."""
        try:
            with open_scanned(self._local[change.rel]) as f:
                f.read(1)
        except OSError as error:
            return error.strerror or str(error)
        return None

    def _stored_md5(self, obj: RemoteObject) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.job.location.bucket, Key=obj.key)
        except Exception as error:  # noqa: BLE001 - no stored checksum: the file is transferred
            log.debug("HEAD %s failed: %s", obj.key, error)
            return None
        return (head.get("Metadata") or {}).get(MD5_METADATA)

    # -- running --------------------------------------------------------------------------------

    def run(self, hold: Callable[[LocalFile], bool] | None = None) -> Outcome:
        """Plan, check the deletion policy, then apply (unless ``dry_run``). Files that could not
        be read are failures of the outcome (one each), in a dry run too. The hash cache is saved
        at the end."""
        plan = self.plan(hold)
        self.job.policy.check(plan, self.job.source, self.job.dest)
        if self.job.dry_run:
            outcome = Outcome(self.job.direction, unchanged=plan.unchanged, dry_run=True, plan=plan)
            self._report_skipped(plan, outcome)
        else:
            outcome = self.apply(plan)
        self.hasher.cache.save(set(self._local) | set(outcome.transferred))
        return outcome

    def _report_skipped(self, plan: Plan, outcome: Outcome) -> None:
        for change in plan.skipped:
            outcome.failures.append((change.rel, change.reason))
            self.reporter.done("read", change, self.job.location.key(change.rel), change.reason)

    def apply(self, plan: Plan) -> Outcome:
        job = self.job
        outcome = Outcome(job.direction, unchanged=plan.unchanged, plan=plan)
        self.reporter.start(plan, job)
        self._report_skipped(plan, outcome)
        transfer = self._upload if job.direction == "push" else self._download
        op = "upload" if job.direction == "push" else "download"
        if plan.transfers:
            with ThreadPoolExecutor(max_workers=job.jobs) as pool:
                futures = {pool.submit(transfer, change): change for change in plan.transfers}
                for future in as_completed(futures):
                    change = futures[future]
                    error = _message(future.exception())
                    if error is None:
                        outcome.transferred.append(change.rel)
                        outcome.bytes += future.result()
                    else:
                        outcome.failures.append((change.rel, error))
                    self.reporter.done(op, change, job.location.key(change.rel), error)
        if plan.deletions:
            delete = self._delete_remote if job.direction == "push" else self._delete_local
            delete(plan.deletions, outcome)
        self.reporter.finish(outcome)
        return outcome

    def _upload(self, change: Change) -> int:
        """Upload the file as it is now (it may have changed since the scan). ``OSError`` when it
        cannot be read, or changed while it was hashed or sent (:class:`FileChanged`)."""
        scanned = self._local[change.rel]
        file = LocalFile.from_stat(scanned.rel, scanned.path, os.stat(scanned.path))
        md5 = self.hasher.md5(file)
        key = self.job.location.key(change.rel)
        extra = {"ContentType": content_type(change.rel), "Metadata": {MD5_METADATA: md5}}
        with open_scanned(file) as body:
            if file.size < self.job.multipart_threshold:
                # Content-MD5 makes S3 refuse the body if it is not what we hashed (file rewritten)
                response = self.client.put_object(Bucket=self.job.location.bucket, Key=key, Body=body,
                                                  ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(), **extra)
                self.reporter.progress(file.size)
                etag = response.get("ETag", "").strip('"').lower()
            else:
                self.client.upload_fileobj(body, self.job.location.bucket, key, ExtraArgs=extra,
                                           Config=self._transfer_config(), Callback=self.reporter.progress)
                etag = self._uploaded_etag(key, file.size, md5)
        if etag:  # leaving open_scanned checked the file did not change while sent
            self.hasher.remember(file, etag)
        return file.size

    def _uploaded_etag(self, key: str, size: int, md5: str) -> str:
        """The multipart ETag of what we just uploaded (one HEAD), so the next run need not read
        the whole file to recompute it; "" when the object is not ours any more."""
        try:
            head = self.client.head_object(Bucket=self.job.location.bucket, Key=key)
        except Exception as error:  # noqa: BLE001 - only a missed cache entry
            log.debug("HEAD %s failed: %s", key, error)
            return ""
        ours = head.get("ContentLength") == size and (head.get("Metadata") or {}).get(MD5_METADATA) == md5
        return head.get("ETag", "").strip('"').lower() if ours else ""

    def _download(self, change: Change) -> int:
        obj = self._remote[change.rel]
        target = inside(self.job.root, change.rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a new file of our own (O_EXCL): never through a symlink someone left under that name
        fd, name = tempfile.mkstemp(dir=target.parent, prefix="." + target.name + ".", suffix=TMP_SUFFIX)
        tmp = Path(name)
        md5, etag = None, obj.etag.lower()
        try:
            if obj.size < self.job.multipart_threshold:
                response = self.client.get_object(Bucket=self.job.location.bucket, Key=obj.key)
                digest = hashlib.md5(usedforsecurity=False)
                size = 0
                with os.fdopen(fd, "wb") as out:
                    fd = -1
                    for chunk in response["Body"].iter_chunks(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        self.reporter.progress(len(chunk))
                etag = response.get("ETag", "").strip('"').lower()
                md5 = digest.hexdigest()
                if is_plain_md5(etag) and md5 != etag:
                    raise OSError(f"download of {obj.key} is corrupt (MD5 {md5} != ETag {etag})")
            else:
                os.close(fd)
                fd = -1
                self.client.download_file(self.job.location.bucket, obj.key, str(tmp),
                                          Config=self._transfer_config(), Callback=self.reporter.progress)
                size = tmp.stat().st_size
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a download gets what open() would
            if obj.last_modified is not None:  # the file's mtime says when its content was written
                os.utime(tmp, (obj.last_modified, obj.last_modified))
            os.replace(tmp, target)  # replaces a symlink at target itself, never what it points to
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        # the next run knows this file is this object without reading it
        done = LocalFile.from_stat(change.rel, target, target.stat())
        self.hasher.cache.put(change.rel, done.identity, etag=etag, md5=md5)
        return size

    def _delete_remote(self, deletions: tuple[Change, ...], outcome: Outcome) -> None:
        from thumbor_plugins.s3.sync import delete_keys

        location = self.job.location
        for start in range(0, len(deletions), _DELETE_BATCH):
            # a batch at a time: a batch that fails as a whole fails its keys only
            keys = {location.key(c.rel): c for c in deletions[start:start + _DELETE_BATCH]}
            try:
                failed = delete_keys(self.client, location.bucket, list(keys))
            except Exception as error:  # noqa: BLE001 - reported per key
                message = str(remote_error(error, location, "deleting in"))
                failed = dict.fromkeys(keys, message)
            for key, change in keys.items():
                problem = failed.get(key)
                (outcome.failures.append((change.rel, problem)) if problem else outcome.deleted.append(change.rel))
                self.reporter.done("delete", change, key, problem)

    def _delete_local(self, deletions: tuple[Change, ...], outcome: Outcome) -> None:
        root = self.job.root
        for change in deletions:
            path = root.joinpath(*change.rel.split("/"))
            try:
                path.unlink()
            except OSError as error:
                outcome.failures.append((change.rel, str(error)))
                self.reporter.done("delete", change, str(path), str(error))
                continue
            outcome.deleted.append(change.rel)
            self.reporter.done("delete", change, str(path), None)
            _prune_empty_parents(path.parent, root)

    def _transfer_config(self) -> Any:
        from thumbor_plugins.s3.sync import transfer_config

        return transfer_config(multipart_threshold=self.job.multipart_threshold, part_size=self.job.part_size)


def _prune_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _message(error: BaseException | None) -> str | None:
    if error is None:
        return None
    from thumbor_plugins.s3 import S3Error
    from thumbor_plugins.s3.sync import translate

    if isinstance(error, OSError) and not hasattr(error, "response"):
        return error.strerror or str(error)  # the line names the file already
    reason = translate(error) if isinstance(error, Exception) else error
    return f"{type(reason).__name__}: {reason}" if isinstance(reason, S3Error) else repr(error)

