"""The ``imgstack`` command. Each subcommand lives in its own module and is imported only when run,
so ``imgstack url`` stays fast and does not import Thumbor or an S3 SDK."""

from __future__ import annotations

import importlib
import importlib.util

import click

#: subcommand name -> module (each module defines a click command named ``command``)
SUBCOMMANDS = {
    "dev": "thumbor_plugins.cli.dev",
    "url": "thumbor_plugins.cli.url",
    "sync": "thumbor_plugins.cli.sync",
    "warm": "thumbor_plugins.cli.warm",
    "purge": "thumbor_plugins.cli.purge",
    "doctor": "thumbor_plugins.cli.doctor",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, mod in SUBCOMMANDS.items() if importlib.util.find_spec(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(cmd_name)
        if module is None or importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="imgstack")
def main() -> None:
    """imgstack: a private image service (S3/MinIO originals, Thumbor rendering).

    \b
    Exit codes, the same for every command:
      0  ok
      1  some items failed (files, variants, objects, checks), each listed
      2  usage error, or refused before changing anything
      3  configuration or credentials (unknown profile, credentials refused, no such bucket)
      4  S3 (or Thumbor, for warm) unreachable: retry later
      5  imgstack dev: a service did not start or stopped

    sync, warm, purge, doctor and url take --json: one JSON document on stdout.
    Shell completion: eval "$(_IMGSTACK_COMPLETE=bash_source imgstack)" (zsh_source, fish_source).
    """
