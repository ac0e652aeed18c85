"""Reading the two sides: the local folder (one walk) and the bucket prefix (ONE paginated
listing, :func:`thumbor_plugins.s3.sync.list_prefix`; no request per object)."""

from __future__ import annotations

import logging
import os
import stat as stat_
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._checksum import LocalFile, RemoteObject
from ._ignore import IgnoreRules
from ._location import S3Location
from .errors import RemoteError

log = logging.getLogger("imgstack.sync")


@dataclass
class ScanReport:
    """What a walk of the folder could not take in. ``problems``: (rel, message) for files and
    folders that could not be read — failures, and nothing at or under such a rel may be deleted
    on the basis of this walk (rel ``""`` is the folder itself, a folder's rel ends with ``/``).
    ``notices``: things deliberately skipped (symlinked folders, dangling symlinks, special files),
    one line each."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def protects(self, rel: str) -> bool:
        """Whether ``rel`` is at or under a path that could not be read."""
        return any(rel == p or (p.endswith("/") or p == "") and rel.startswith(p) for p, _ in self.problems)


def scan_local(root: Path, rules: IgnoreRules, report: ScanReport | None = None, *,
               follow_symlinks: bool = False) -> dict[str, LocalFile]:
    """Regular files under ``root`` by relative POSIX path. Symlinked files are followed;
    symlinked folders only with ``follow_symlinks`` (each real folder once: no loops), else they
    are skipped with a notice, as are dangling symlinks and special files (FIFOs, sockets,
    devices). Names that are not valid UTF-8 cannot be keys: skipped with a notice. Folders or
    files that cannot be read go to ``report.problems``."""
    found: dict[str, LocalFile] = {}
    report = ScanReport() if report is None else report
    seen_dirs: set[tuple[int, int]] = set()
    if follow_symlinks:
        with suppress(OSError):
            st = root.stat()
            seen_dirs.add((st.st_dev, st.st_ino))
    stack = [(root, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            report.problems.append((rel_folder, f"cannot read folder {folder}: {error.strerror or error}"))
            continue
        for entry in entries:
            rel = f"{rel_folder}{entry.name}"
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                report.notices.append(f"skipping {os.fsdecode(entry.path)!r}: its name is not valid UTF-8")
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.dir_ignored(rel):
                        stack.append((Path(entry.path), rel + "/"))
                    continue
                if rules.ignored(rel):
                    continue
                if entry.is_symlink():
                    try:
                        target = os.stat(entry.path)
                    except FileNotFoundError:
                        report.notices.append(f"skipping {rel!r}: dangling symlink (to {os.readlink(entry.path)!r})")
                        continue
                    if stat_.S_ISDIR(target.st_mode):
                        if not follow_symlinks:
                            report.notices.append(f"skipping {rel!r}: symlinked folder (see --follow-symlinks)")
                        elif rules.dir_ignored(rel):
                            pass
                        elif (target.st_dev, target.st_ino) in seen_dirs:
                            report.notices.append(f"skipping {rel!r}: symlink to a folder already synced (a loop?)")
                        else:
                            seen_dirs.add((target.st_dev, target.st_ino))
                            stack.append((Path(entry.path), rel + "/"))
                        continue
                if not entry.is_file(follow_symlinks=True):
                    report.notices.append(f"skipping {rel!r}: not a regular file")
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError as error:  # vanished or unreadable while we walk
                report.problems.append((rel, f"cannot read: {error.strerror or error}"))
                continue
            found[rel] = LocalFile.from_stat(rel, Path(entry.path), st)
    return found


def remote_error(error: Exception, location: S3Location, action: str) -> RemoteError:
    """A clear message for a failure that makes the bucket unusable (its ``reason`` says which
    kind: credentials and configuration, or S3 unreachable)."""
    from thumbor_plugins.s3 import AccessDenied, ConfigError, NoCredentials, NotFound
    from thumbor_plugins.s3.sync import translate

    reason = translate(error)
    if isinstance(reason, (NoCredentials, ConfigError)):
        return RemoteError(str(reason), reason)
    code = getattr(reason, "code", "")
    if isinstance(reason, NotFound):
        return RemoteError(f"bucket {location.bucket!r} does not exist (or is not visible with these credentials)",
                           reason)
    if isinstance(reason, AccessDenied):
        hint = {
            "InvalidAccessKeyId": "the access key is unknown to the server (AWS_ACCESS_KEY_ID)",
            "SignatureDoesNotMatch": "the secret key does not match the access key (AWS_SECRET_ACCESS_KEY)",
        }.get(code, "access denied")
        return RemoteError(f"S3 refused the credentials while {action} {location}: {hint} [{code}]", reason)
    return RemoteError(f"cannot reach S3 while {action} {location}: {reason}", reason)


def list_remote(client: Any, location: S3Location, rules: IgnoreRules) -> dict[str, RemoteObject]:
    """Every object under the prefix, by relative path, from one paginated listing. Keys that no
    file can have (folder markers, ``a//b``) and excluded keys are left out (so never deleted)."""
    from thumbor_plugins.s3.sync import list_prefix

    found: dict[str, RemoteObject] = {}
    try:
        for item in list_prefix(client, location.bucket, location.prefix):
            rel = location.rel(item.key)
            if rel is None or rules.ignored(rel):
                continue
            modified = item.last_modified
            found[rel] = RemoteObject(rel, item.key, item.size, item.etag,
                                      modified.timestamp() if modified is not None else None)
    except Exception as error:  # noqa: BLE001 - every failure of the listing is a RemoteError
        raise remote_error(error, location, "listing") from error
    return found
