"""What the commands share: the S3 flags (``--profile`` among them) and opening the S3 client,
the signing flags, and ``--json``.

``--json`` prints ONE JSON document on stdout when the command ends (``sync --watch``: one per
run, JSON Lines); the human lines go to stderr. Every document has::

    {"command": "warm", "ok": false, "exit_code": 3,
     ... the command's own fields ...,
     "error": null | {"kind": "usage|config|unavailable|failed|service", "message": "..."}}

``ok`` is ``exit_code == 0``. ``error`` is null, or set when the command could not do its job:
exit codes 2-5 of :mod:`.exits` (and 1 for ``url --version auto`` whose object cannot be read).
The command's own fields are there when it ran, whatever the outcome: failed items (exit code 1)
are listed in them; a ``warm`` that no Thumbor answered has both them and ``error`` (exit code 4).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .exits import CliError, Exit

F = TypeVar("F", bound=Callable[..., Any])


# -- S3 -------------------------------------------------------------------------------------------

def profile_option(function: F) -> F:
    return click.option("--profile", metavar="NAME",
                        help="AWS profile of the config/credentials files (default: AWS_PROFILE).")(function)


def endpoint_option(function: F) -> F:
    return click.option("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL).")(function)


def s3_options(function: F) -> F:
    """``--endpoint-url/--access-key/--secret-key/--profile``; without them, the standard AWS_*
    environment and botocore's credential chain."""
    function = profile_option(function)
    function = click.option("--secret-key", metavar="KEY",
                            help="S3 secret key (default: AWS_SECRET_ACCESS_KEY).")(function)
    function = click.option("--access-key", metavar="ID", help="S3 access key (default: AWS_ACCESS_KEY_ID).")(function)
    return endpoint_option(function)


def open_s3(**settings: Any) -> Any:
    """The command's S3 client (:func:`thumbor_plugins.s3.sync.client`) from its flags
    (``endpoint_url``, ``access_key``, ``secret_key``, ``profile``, ...; None: the environment).
    An unknown profile is a :class:`CliError` (exit code 3)."""
    from thumbor_plugins.s3 import S3Error, S3Settings
    from thumbor_plugins.s3.sync import client

    from .exits import exit_for

    try:
        return client(S3Settings.from_env(**settings))
    except S3Error as error:
        raise CliError(str(error), exit_for(error)) from None


# -- signing --------------------------------------------------------------------------------------

def signing_options(function: F) -> F:
    """``--key`` (``SECURITY_KEY``) and ``--algorithm`` (``IMGSTACK_SIGNATURE_ALGORITHM``)."""
    function = click.option("--algorithm", type=click.Choice(["sha1", "sha256"]), default="sha1",
                            envvar="IMGSTACK_SIGNATURE_ALGORITHM", show_envvar=True, show_default=True)(function)
    return click.option(
        "--key", envvar="SECURITY_KEY", show_envvar=True,
        help="Signing key (prefer the environment: command lines are visible to other users).")(function)


def require_key(key: str | None) -> str:
    if not key:
        raise click.UsageError("no signing key: set SECURITY_KEY or pass --key")
    return key


# -- --json ---------------------------------------------------------------------------------------

def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (human lines go to stderr).")(function)


def document(command: str, code: Exit, *, error: str | None = None, **fields: Any) -> dict[str, Any]:
    """The ``--json`` document of a run (shape in the module docstring)."""
    return {"command": command, "ok": code == Exit.OK, "exit_code": int(code), **fields,
            "error": None if error is None else {"kind": code.kind, "message": error}}


def emit(command: str, code: Exit, **fields: Any) -> None:
    """Print the document on stdout, one line."""
    click.echo(json.dumps(document(command, code, **fields), ensure_ascii=False))
    sys.stdout.flush()


def say(text: str, *, as_json: bool) -> None:
    """A human line: on stdout, or on stderr when ``--json`` keeps stdout for the document."""
    click.echo(text, err=as_json)


class JsonCommand(click.Command):
    """A command with ``--json`` whose whole-command errors (usage, configuration, S3
    unreachable: any :class:`click.ClickException`) are JSON documents too, on stdout, while
    click prints them on stderr as usual."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        options = args[:args.index("--")] if "--" in args else args
        wants_json = "--json" in options
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as error:
            if wants_json:
                self._emit_error(error)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            if ctx.params.get("as_json"):
                self._emit_error(error)
            raise

    def _emit_error(self, error: click.ClickException) -> None:
        code = Exit(error.exit_code) if error.exit_code in set(Exit) else Exit.FAILED
        emit(self.name or "imgstack", code, error=error.format_message())
