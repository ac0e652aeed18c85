"""The CLI's scripting contract that needs no server: one exit-code table (code, README, --help
agree; every command exits through it), usage errors as ``--json`` documents, shell completion."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from thumbor_plugins.cli import SUBCOMMANDS, main
from thumbor_plugins.cli.exits import Exit

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "thumbor_plugins" / "cli"
JSON_COMMANDS = ("url", "sync", "warm", "purge", "doctor")


def test_the_table() -> None:
    assert {code.name: int(code) for code in Exit} == {
        "OK": 0, "FAILED": 1, "USAGE": 2, "CONFIG": 3, "UNAVAILABLE": 4, "SERVICE": 5}
    assert Exit.USAGE == click_usage_code()


def click_usage_code() -> int:
    import click

    return click.UsageError("x").exit_code


def test_readme_documents_exactly_this_table() -> None:
    section = (ROOT / "README.md").read_text().split("## Scripting imgstack", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| `(\w+)` \|", section, re.M)
    assert [(int(code), name) for code, name in rows] == [(int(code), code.kind) for code in Exit]


def test_help_lists_the_codes() -> None:
    text = CliRunner().invoke(main, ["--help"]).output
    for code in Exit:
        assert re.search(rf"^\s+{int(code)}  \S", text, re.M), text


def test_every_command_exits_through_the_table() -> None:
    """No bare numbers: ``sys.exit``/``SystemExit``/``exit_code=`` in the CLI take an :class:`Exit`."""
    offenders = []
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("sys.exit", "SystemExit", "ctx.exit", "exit") and node.args:
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, int):
                        offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Assign) and any(ast.unparse(t).endswith("exit_code") for t in node.targets):
                if isinstance(node.value, ast.Constant):
                    offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []
    assert set(SUBCOMMANDS) == {"dev", "url", "sync", "warm", "purge", "doctor"}


# -- usage errors under --json -----------------------------------------------------------------------

def run(*args: str):  # noqa: ANN201
    env = {"SECURITY_KEY": None, "IMGSTACK_URL": None, "AWS_PROFILE": None, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("args", [
    ("url", "images/a.jpg", "--json"),                                   # no key (in the command)
    ("url", "images/a.jpg", "--key", "k", "--size", "big", "--json"),      # a bad value (while parsing)
    ("url", "--json", "images/a.jpg", "--key", "k", "--no-such-flag"),     # unknown option
    ("warm", "s3://images/", "--json"),                                  # --url missing
    ("purge", "images/", "--json"),                                      # a folder without --prefix
    ("sync", ".", ".", "--json"),                                        # two folders
    ("doctor", "--json"),                                                # --url missing
])
def test_usage_errors_are_json_documents_too(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)  # the whole of stdout
    assert document == {"command": args[0], "ok": False, "exit_code": 2,
                        "error": {"kind": "usage", "message": document["error"]["message"]}}
    assert document["error"]["message"] and document["error"]["message"] in result.stderr


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_json_is_offered_by_every_command_that_reports(command: str) -> None:
    assert "--json" in run(command, "--help").output


def test_without_json_stdout_stays_empty_on_usage_errors() -> None:
    result = run("url", "images/a.jpg")
    assert result.exit_code == 2 and result.stdout == "" and "SECURITY_KEY" in result.stderr


def test_a_broken_presets_file_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "presets.json"
    broken.write_text("{not json")
    result = CliRunner().invoke(main, ["url", "images/a.jpg", "--key", "k", "--preset", "thumb", "--json"],
                                env={"IMGSTACK_PRESETS_FILE": str(broken)})
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["error"]["kind"] == "config"
    unknown = CliRunner().invoke(main, ["url", "images/a.jpg", "--key", "k", "--preset", "nope"],
                                 env={"IMGSTACK_PRESETS_FILE": None})
    assert unknown.exit_code == 2 and "unknown preset" in unknown.stderr


# -- shell completion ---------------------------------------------------------------------------------

def imgstack() -> str:
    found = Path(sys.executable).parent / "imgstack"
    return str(found) if found.exists() else shutil.which("imgstack") or pytest.skip("imgstack is not installed")


def test_the_entry_point_is_named_imgstack() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"imgstack": "thumbor_plugins.cli:main"}


def complete(env: dict[str, str]) -> str:
    return subprocess.run([imgstack()], env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
                          check=True).stdout


def test_bash_completion_script_and_answers() -> None:
    script = complete({"_IMGSTACK_COMPLETE": "bash_source"})
    assert "_imgstack_completion" in script and "complete -o nosort -F _imgstack_completion imgstack" in script
    commands = complete({"_IMGSTACK_COMPLETE": "bash_complete", "COMP_WORDS": "imgstack sy", "COMP_CWORD": "1"})
    assert commands.split() == ["plain,sync"]
    options = complete({"_IMGSTACK_COMPLETE": "bash_complete", "COMP_WORDS": "imgstack warm --pro",
                        "COMP_CWORD": "2"})
    assert "plain,--profile" in options.split()


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells(shell: str) -> None:
    assert "imgstack" in complete({"_IMGSTACK_COMPLETE": f"{shell}_source"})
