"""Reading the two sides: the local folder (one walk) and the bucket prefix (ONE paginated
``list_objects_v2``; no request per object)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ._checksum import LocalFile, RemoteObject
from ._ignore import IgnoreRules
from ._location import S3Location
from .errors import RemoteError

log = logging.getLogger("imgstack.sync")


def scan_local(root: Path, rules: IgnoreRules, problems: list[str] | None = None) -> dict[str, LocalFile]:
    """Regular files under ``root`` by relative POSIX path. Symlinked files are followed,
    symlinked folders are not (no loops). Names that are not valid UTF-8 cannot be keys: skipped
    with a warning. Folders or files that cannot be read are appended to ``problems``: the
    listing is then incomplete, and callers must not delete on its basis."""
    found: dict[str, LocalFile] = {}
    problems = [] if problems is None else problems
    stack = [(root, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            log.warning("cannot read %s: %s", folder, error)
            problems.append(f"cannot read {folder}: {error}")
            continue
        for entry in entries:
            rel = f"{rel_folder}{entry.name}"
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                log.warning("skipping %r: its name is not valid UTF-8", os.fsdecode(entry.path))
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.dir_ignored(rel):
                        stack.append((Path(entry.path), rel + "/"))
                    continue
                if rules.ignored(rel) or not entry.is_file(follow_symlinks=True):
                    continue
                stat = entry.stat(follow_symlinks=True)
            except OSError as error:  # vanished or unreadable while we walk
                log.warning("skipping %s: %s", entry.path, error)
                problems.append(f"cannot read {entry.path}: {error}")
                continue
            found[rel] = LocalFile(rel, Path(entry.path), stat.st_size, stat.st_mtime_ns)
    return found


def remote_error(error: Exception, location: S3Location, action: str) -> RemoteError:
    """A clear message for a failure that makes the bucket unusable (exit code 3)."""
    from thumbor_plugins.s3 import AccessDenied, NoCredentials, NotFound
    from thumbor_plugins.s3.sync import translate

    reason = translate(error)
    if isinstance(reason, NoCredentials):
        return RemoteError(str(reason))
    code = getattr(reason, "code", "")
    if isinstance(reason, NotFound):
        return RemoteError(f"bucket {location.bucket!r} does not exist (or is not visible with these credentials)")
    if isinstance(reason, AccessDenied):
        hint = {
            "InvalidAccessKeyId": "the access key is unknown to the server (AWS_ACCESS_KEY_ID)",
            "SignatureDoesNotMatch": "the secret key does not match the access key (AWS_SECRET_ACCESS_KEY)",
        }.get(code, "access denied")
        return RemoteError(f"S3 refused the credentials while {action} {location}: {hint} [{code}]")
    return RemoteError(f"cannot reach S3 while {action} {location}: {reason}")


def list_remote(client: Any, location: S3Location, rules: IgnoreRules) -> dict[str, RemoteObject]:
    """Every object under the prefix, by relative path, from one paginated listing. Keys that no
    file can have (folder markers, ``a//b``) and excluded keys are left out (so never deleted)."""
    found: dict[str, RemoteObject] = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                key = item["Key"]
                rel = location.rel(key)
                if rel is None or rules.ignored(rel):
                    continue
                found[rel] = RemoteObject(rel, key, int(item["Size"]), item.get("ETag", "").strip('"'))
    except Exception as error:  # noqa: BLE001 - every failure of the listing is a RemoteError
        raise remote_error(error, location, "listing") from error
    return found
