"""Errors of ``imgstack sync`` (hierarchy drawn in the package docstring).

Failures of single transfers are not exceptions: they are values in :class:`Outcome.failures`.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class Refused(SyncError):
    """The arguments or the plan are unsafe or inconsistent: nothing was changed."""

    exit_code = 2


class RemoteError(SyncError):
    """The bucket cannot be used: credentials refused, no such bucket, S3 unreachable."""

    exit_code = 3
