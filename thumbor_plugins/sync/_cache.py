"""The hash cache: what is known about each local file's content, by the file's identity, so a
no-op run reads no file whose identity is unchanged (its cost grows with the number of files,
not their bytes).

Identity = (size, mtime_ns, ctime_ns, inode). ctime cannot be set by a program (``touch -d``,
``os.utime`` and ``cp -p`` all bump it), so a same-size rewrite that restored the old mtime still
changes the identity; a file replaced by another (editors that save by rename, ``cp``) changes the
inode. Not detected: a change that keeps all four — a rewrite while the clock is set back, or a
filesystem that reports no real ctime/inode (some FUSE and network mounts). ``--checksum``
(``Hasher(verify=True)``) reads every file whatever the cache says.

Per file the cache keeps the MD5 and the ETags already found to match (a multipart ETag costs a
full read to recompute). The persistent file is JSON under the user's cache folder (see
:func:`cache_file`), one per synced folder, written atomically at the end of each run; an
unreadable or corrupt file is ignored (everything is hashed again), an unwritable one only logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("imgstack.sync")

#: (size, mtime_ns, ctime_ns, inode)
Identity = tuple[int, int, int, int]
_VERSION = 1
#: where the cache files go (overrides the default folder, see :func:`cache_file`)
CACHE_DIR_ENV = "IMGSTACK_SYNC_CACHE_DIR"


@dataclass
class _Entry:
    identity: Identity
    md5: str | None = None
    etags: set[str] = field(default_factory=set)


def cache_dir() -> Path:
    """``$IMGSTACK_SYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/imgstack/sync``, else
    ``~/.cache/imgstack/sync``."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgstack" / "sync"


def cache_file(root: Path) -> Path:
    """The cache file of the folder ``root``: named by a hash of its absolute real path (kept
    outside the folder: syncing must not need write access to a folder it only reads)."""
    real = os.path.realpath(root)
    return cache_dir() / (hashlib.sha256(os.fsencode(real)).hexdigest()[:24] + ".json")


class HashCache:
    """Thread-safe map rel -> what is known of the file with that identity. An entry whose
    identity differs from the file's is ignored and replaced. ``path=None``: in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> HashCache:
        """The cache kept at ``path``; empty when it is missing, unreadable or not ours."""
        cache = cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != _VERSION:
                return cache
            for rel, (size, mtime, ctime, ino, md5, etags) in data["files"].items():
                cache._entries[rel] = _Entry((int(size), int(mtime), int(ctime), int(ino)), md5, set(etags))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("ignoring the hash cache %s: %s", path, error)
            cache._entries.clear()
        return cache

    def _get(self, rel: str, identity: Identity) -> _Entry | None:
        entry = self._entries.get(rel)
        return entry if entry is not None and entry.identity == identity else None

    def md5(self, rel: str, identity: Identity) -> str | None:
        with self._lock:
            entry = self._get(rel, identity)
            return entry.md5 if entry else None

    def matched(self, rel: str, identity: Identity, etag: str) -> bool:
        with self._lock:
            entry = self._get(rel, identity)
            return entry is not None and etag in entry.etags

    def put(self, rel: str, identity: Identity, *, md5: str | None = None, etag: str | None = None) -> None:
        with self._lock:
            entry = self._get(rel, identity)
            if entry is None:
                entry = self._entries[rel] = _Entry(identity)
            if md5 is not None:
                entry.md5 = md5
            if etag:
                entry.etags.add(etag)

    def save(self, keep: Iterable[str]) -> None:
        """Write the entries of the paths in ``keep`` (the files of the last scan: the others are
        gone) to :attr:`path`, atomically. Failing to write is logged, never an error."""
        if self.path is None:
            return
        with self._lock:
            files = {rel: [*e.identity, e.md5, sorted(e.etags)] for rel in keep
                     if (e := self._entries.get(rel)) is not None}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"version": _VERSION, "files": files}, out, separators=(",", ":"))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            log.warning("cannot write the hash cache %s: %s", self.path, error)
