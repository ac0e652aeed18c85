"""The planner: pure. From the two sides' listings and a content check to a :class:`Plan`, and
the safety rules for deletions (:class:`DeletePolicy`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._checksum import LocalFile, RemoteObject
from .errors import Refused

Direction = Literal["push", "pull"]


@dataclass(frozen=True)
class Change:
    """One thing to do. ``reason``: ``new``, ``size``, ``content``, ``unverified`` for a
    transfer; ``extra`` for a deletion (the destination has it, the source does not); for a
    skipped path, why it could not be compared (an ``OSError``'s message); ``settling`` for a
    path held back (still being written)."""

    rel: str
    size: int
    reason: str


@dataclass(frozen=True)
class Plan:
    direction: Direction
    transfers: tuple[Change, ...]
    deletions: tuple[Change, ...]
    unchanged: int
    source_count: int
    dest_count: int
    #: paths whose content could not be read to compare them: neither transferred nor deleted
    skipped: tuple[Change, ...] = ()
    #: paths left out of this run on purpose (``--watch``: still being written)
    held: tuple[Change, ...] = ()

    @property
    def transfer_bytes(self) -> int:
        return sum(c.size for c in self.transfers)

    @property
    def empty(self) -> bool:
        return not self.transfers and not self.deletions

    def lines(self, source: str, dest: str) -> Iterator[str]:
        """Human-readable plan (``--dry-run``)."""
        verb = "upload" if self.direction == "push" else "download"
        for c in self.transfers:
            yield f"{verb} {c.rel!r} ({c.reason}, {c.size} bytes)"
        for c in self.deletions:
            yield f"delete {c.rel!r} (not in {source})"
        for c in self.skipped:
            yield f"cannot read {c.rel!r}: {c.reason}"


def make_plan(direction: Direction, local: Mapping[str, LocalFile], remote: Mapping[str, RemoteObject], *,
              delete: bool, differs: Callable[[LocalFile, RemoteObject], str | None],
              map_: Callable[..., Iterable] = map) -> Plan:
    """Compare the two sides. ``differs(local, remote)`` is called only for paths on both sides
    (through ``map_``, e.g. an executor's ``map`` to hash in parallel); nothing else does I/O.
    When ``differs`` raises ``OSError`` (the local file vanished, cannot be read, changed while
    read) that path alone is :attr:`Plan.skipped`: neither transferred nor deleted."""
    source, dest = (local, remote) if direction == "push" else (remote, local)
    both = sorted(rel for rel in source if rel in dest)

    def compare(rel: str) -> str | None | OSError:
        try:
            return differs(local[rel], remote[rel])
        except OSError as error:
            return error

    reasons = dict(zip(both, map_(compare, both), strict=True))
    transfers, skipped = [], []
    for rel in sorted(source):
        reason = reasons[rel] if rel in reasons else "new"
        if isinstance(reason, OSError):
            skipped.append(Change(rel, local[rel].size, _os_message(reason)))
        elif reason is not None:
            transfers.append(Change(rel, source[rel].size, reason))
    deletions = tuple(Change(rel, dest[rel].size, "extra") for rel in sorted(dest) if rel not in source) \
        if delete else ()
    unchanged = sum(1 for r in reasons.values() if r is None)
    return Plan(direction, tuple(transfers), deletions, unchanged, len(source), len(dest), tuple(skipped))


def _os_message(error: OSError) -> str:
    """``strerror`` without the path (the line names the file already), else the text."""
    return error.strerror or str(error) or type(error).__name__


_LIMIT = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<percent>%)?")


@dataclass(frozen=True)
class DeletePolicy:
    """When ``--delete`` must refuse (unless ``force``): the source is empty, or the deletions
    exceed the limit. Default limit: more than ``DEFAULT_PERCENT``% of the destination AND more
    than ``DEFAULT_COUNT`` entries. An explicit ``max_count`` or ``max_percent`` replaces it."""

    max_count: int | None = None
    max_percent: float | None = None
    force: bool = False
    DEFAULT_PERCENT: float = field(default=50.0, repr=False)
    DEFAULT_COUNT: int = field(default=10, repr=False)

    @classmethod
    def parse(cls, text: str | None, *, force: bool = False) -> DeletePolicy:
        """``None`` (default rule), ``N`` (at most N deletions) or ``P%`` (at most P% of the
        destination)."""
        if text is None:
            return cls(force=force)
        match = _LIMIT.fullmatch(text.strip())
        if not match:
            raise Refused(f"--max-delete takes N or P% (e.g. 100 or 20%), got {text!r}")
        if match["percent"]:
            return cls(max_percent=float(match["number"]), force=force)
        if "." in match["number"]:
            raise Refused(f"--max-delete N must be a whole number, got {text!r}")
        return cls(max_count=int(match["number"]), force=force)

    def check(self, plan: Plan, source: str, dest: str) -> None:
        """Raise :class:`Refused` when the plan's deletions are not allowed."""
        n = len(plan.deletions)
        if self.force or n == 0:
            return
        if plan.source_count == 0:
            raise Refused(f"{source} is empty: refusing to delete all {n} entries of {dest} "
                          "(an unmounted disk?). Use --force if that is what you want.")
        share = 100.0 * n / plan.dest_count if plan.dest_count else 100.0
        if self.max_count is not None:
            too_many, limit = n > self.max_count, f"--max-delete {self.max_count}"
        elif self.max_percent is not None:
            too_many, limit = share > self.max_percent, f"--max-delete {self.max_percent:g}%"
        else:
            too_many = share > self.DEFAULT_PERCENT and n > self.DEFAULT_COUNT
            limit = (f"the default limit ({self.DEFAULT_PERCENT:g}% of the destination "
                     f"and more than {self.DEFAULT_COUNT})")
        if too_many:
            raise Refused(f"refusing to delete {n} of {plan.dest_count} entries of {dest} ({share:.0f}%), "
                          f"over {limit}. Check {source}; raise --max-delete or use --force.")
