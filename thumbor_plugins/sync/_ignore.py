"""Exclusion rules: ``--exclude GLOB`` and the ``.imgstackignore`` file, with gitignore's glob
syntax (``*``, ``?``, ``[abc]``, ``**``, a leading ``/`` anchors at the folder, a trailing ``/``
matches folders only, ``!`` re-includes, the last matching rule wins, ``#`` starts a comment).

An excluded path is out of the sync on BOTH sides: not transferred, and never deleted by
``--delete`` (as rsync does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".imgstackignore"
TMP_SUFFIX = ".imgstack-tmp"
#: never synced: the ignore file itself and our partial downloads
IMPLICIT = (f"/{IGNORE_FILE}", f"*{TMP_SUFFIX}")


@dataclass(frozen=True)
class _Rule:
    pattern: str
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _rule(line: str) -> _Rule | None:
    text = line.rstrip("\n").rstrip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    dir_only = text.endswith("/")
    body = text.rstrip("/")
    if not body:
        return None
    anchored = "/" in body
    body = body.lstrip("/")
    regex = ("^" if anchored else "^(?:.*/)?") + _translate(body) + "$"
    return _Rule(line.strip(), re.compile(regex, re.DOTALL), negate, dir_only)


class IgnoreRules:
    """Compiled rules. :meth:`ignored` answers for a relative POSIX path."""

    def __init__(self, patterns: Iterable[str] = (), *, implicit: bool = True) -> None:
        lines = [*(IMPLICIT if implicit else ()), *patterns]
        self.rules = tuple(r for r in map(_rule, lines) if r is not None)

    @classmethod
    def for_folder(cls, root: Path, excludes: Iterable[str] = ()) -> IgnoreRules:
        """The folder's ``.imgstackignore`` (if any) then ``excludes`` (they win on conflict)."""
        lines: list[str] = []
        ignore_file = root / IGNORE_FILE
        if ignore_file.is_file():
            lines = ignore_file.read_text(encoding="utf-8").splitlines()
        return cls([*lines, *excludes])

    def _match(self, path: str, is_dir: bool) -> bool | None:
        verdict = None
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path):
                verdict = not rule.negate
        return verdict

    def dir_ignored(self, rel_dir: str) -> bool:
        """Whether the whole folder ``rel_dir`` is excluded (callers stop descending into it)."""
        return bool(self._match(rel_dir, True))

    def ignored(self, rel: str) -> bool:
        """Whether the file ``rel`` is excluded, itself or by one of its folders."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self._match("/".join(parts[:depth]), True):
                return True
        return bool(self._match(rel, False))
