"""``imgstack sync``: a folder and a bucket prefix kept in step, in either direction.

How a run works (:class:`Syncer`):

1. read both sides: one walk of the folder (:func:`scan_local`), ONE paginated listing of the
   prefix (:func:`list_remote`); ``--exclude`` and ``.imgstackignore`` rules (:class:`IgnoreRules`)
   take paths out of both;
2. plan (:func:`make_plan`, pure): a path on one side only is new (or extra); a path on both is
   compared by size first, then content (:class:`Checker`: local MD5 against the ETag, a
   multipart ETag recomputed locally, or the MD5 we store in every object's metadata) — local
   files are hashed only when the sizes match, and only once per identity (size, mtime, ctime,
   inode) thanks to the :class:`HashCache` (persistent for the CLI);
3. check deletions against the :class:`DeletePolicy` (an empty source or too many deletions is
   refused unless forced: an unmounted disk must not wipe the bucket);
4. transfer in a thread pool sharing one boto3 client, then delete.

``--watch`` (:class:`Watcher`) repeats full runs, holding back files still being written and
retrying failures with backoff.

Errors (``thumbor_plugins.sync.errors``). Failures of single files — unreadable, vanished,
changed while read (:class:`FileChanged`), a transfer or deletion refused — are values in
:attr:`Outcome.failures`: the rest of the run goes on. The CLI's exit code for each
(``thumbor_plugins.cli.exits``) in brackets::

    SyncError
     ├── Refused       unsafe plan or inconsistent arguments, nothing changed     (2, usage)
     └── RemoteError   credentials refused, no such bucket                       (3, config)
                       S3 unreachable                                            (4, unavailable)
"""

from ._cache import HashCache
from ._checksum import MD5_METADATA, Checker, FileChanged, Hasher, LocalFile, RemoteObject
from ._ignore import IGNORE_FILE, IgnoreRules
from ._location import S3Location
from ._mime import content_type
from ._plan import Change, DeletePolicy, Plan, make_plan
from ._run import DEFAULT_JOBS, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, Outcome, Reporter, Syncer, SyncJob
from ._sides import ScanReport, list_remote, scan_local
from ._watch import Watcher
from .errors import Refused, RemoteError, SyncError

__all__ = [
    "DEFAULT_JOBS",
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "IGNORE_FILE",
    "MD5_METADATA",
    "Change",
    "Checker",
    "DeletePolicy",
    "FileChanged",
    "HashCache",
    "Hasher",
    "IgnoreRules",
    "LocalFile",
    "Outcome",
    "Plan",
    "Refused",
    "RemoteError",
    "RemoteObject",
    "Reporter",
    "S3Location",
    "ScanReport",
    "SyncError",
    "SyncJob",
    "Syncer",
    "Watcher",
    "content_type",
    "list_remote",
    "make_plan",
    "scan_local",
]
