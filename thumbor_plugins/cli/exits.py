"""The exit codes of every ``imgstack`` command: ONE table, used by every command and printed in
the README ("Scripting imgstack").

====  ===========  ==================================================================================
code  name         meaning
====  ===========  ==================================================================================
0     OK           done: in step, warmed, purged, every check passed (``sync --watch``, ``dev``:
                   stopped by Ctrl-C/SIGTERM)
1     FAILED       some items failed — files, variants, objects, checks, the object of
                   ``url --version auto`` — each listed on stderr (and in ``--json``); the rest
                   was done
2     USAGE        bad command line (click's own code), or refused before anything was changed:
                   an unsafe ``sync --delete``, a missing source folder, an unknown preset
3     CONFIG       configuration or credentials: unknown AWS profile, no credentials,
                   credentials refused, no such bucket, an unreadable presets file
4     UNAVAILABLE  S3 (or, for ``warm``, Thumbor) unreachable or timing out: worth retrying later
5     SERVICE      ``imgstack dev``: S3 or Thumbor did not start, or one of them stopped
====  ===========  ==================================================================================

A crash (a bug: Python's traceback on stderr) exits 1 as Python does; with ``--json`` it prints
no JSON document.
"""

from __future__ import annotations

from enum import IntEnum

import click

__all__ = ["CliError", "Exit", "exit_for", "fail"]


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    CONFIG = 3
    UNAVAILABLE = 4
    SERVICE = 5

    @property
    def kind(self) -> str:
        """The name used in ``--json`` documents (``"config"``)."""
        return self.name.lower()


class CliError(click.ClickException):
    """A clear one-line error (``Error: message`` on stderr, no traceback) with its exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.exit_code = int(code)  # type: ignore[misc]  # click's class default, per instance here


def exit_for(error: BaseException) -> Exit:
    """The exit code for an S3 error (:mod:`thumbor_plugins.s3.errors`) or a sync error."""
    from thumbor_plugins.s3.errors import AccessDenied, NotFound, Unavailable
    from thumbor_plugins.sync.errors import Refused, RemoteError

    if isinstance(error, RemoteError):
        return exit_for(error.reason) if error.reason is not None else Exit.CONFIG
    if isinstance(error, Refused):
        return Exit.USAGE
    if isinstance(error, Unavailable):
        return Exit.UNAVAILABLE
    if isinstance(error, (AccessDenied, NotFound)):  # credentials, profile, no such bucket
        return Exit.CONFIG
    return Exit.FAILED  # e.g. an object over a byte cap: that item failed


def fail(error: BaseException, what: str = "") -> CliError:
    """A :class:`CliError` for an S3 or sync error: ``what: ClassName: reason``, with its code."""
    from thumbor_plugins.s3.sync import translate
    from thumbor_plugins.sync.errors import SyncError

    reason: BaseException = error if isinstance(error, SyncError) else translate(error)
    text = str(reason) if isinstance(reason, SyncError) else f"{type(reason).__name__}: {reason}"
    return CliError(f"{what}: {text}" if what else text, exit_for(reason))
