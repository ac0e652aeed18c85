"""Errors of ``imgstack sync`` (hierarchy drawn in the package docstring). The CLI turns them into
exit codes (``thumbor_plugins.cli.exits``).

Failures of single transfers are not exceptions: they are values in :class:`Outcome.failures`.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class."""


class Refused(SyncError):
    """The arguments or the plan are unsafe or inconsistent: nothing was changed."""


class RemoteError(SyncError):
    """The bucket cannot be used: credentials refused, no such bucket, S3 unreachable.
    ``reason`` is the :class:`~thumbor_plugins.s3.S3Error` behind it (which says which)."""

    def __init__(self, message: str, reason: Exception | None = None) -> None:
        super().__init__(message)
        self.reason = reason
