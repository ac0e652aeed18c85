"""What the deployment tests share (tests/deploy/, one file per artefact, all offline unless marked
``integration``): the artefacts' paths, Compose's interpolation (the subset this repo uses), the
compose-spec validator, and the credentials every compose file must require."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_DIR = ROOT / "compose"
DOCKERFILE = COMPOSE_DIR / "thumbor" / "Dockerfile"
INIT_SCRIPT = COMPOSE_DIR / "minio" / "init.sh"
POLICY_FILE = COMPOSE_DIR / "minio" / "thumbor-policy.json"
NGINX_CONF = COMPOSE_DIR / "nginx" / "cache.conf"
MINIO_LB_CONF = COMPOSE_DIR / "nginx" / "minio-lb.conf"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"

#: Variables that hold credentials: each must be required (``${VAR:?...}``) wherever it is used.
REQUIRED_SECRETS = frozenset({
    "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
    "THUMBOR_S3_ACCESS_KEY", "THUMBOR_S3_SECRET_KEY",
    "SECURITY_KEY", "IMGSTACK_EVENTS_TOKEN",
})
#: Secret-ish but optional: allowed only with an empty default.
OPTIONAL_SECRETS = frozenset({"IMGSTACK_VERIFY_KEYS"})

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal $.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation (the subset this repo uses), for tests that need real values."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return arg
            return value
        return value or ""
    return _INTERPOLATION.sub(replace, text)


def interpolations(text: str) -> list[tuple[str, str | None, str]]:
    return [(m.group("name"), m.group("op"), m.group("arg") or "")
            for m in _INTERPOLATION.finditer(text) if m.group("name")]


def map_strings(node: Any, function: Callable[[str], Any]) -> Any:
    if isinstance(node, dict):
        return {key: map_strings(value, function) for key, value in node.items()}
    if isinstance(node, list):
        return [map_strings(value, function) for value in node]
    return function(node) if isinstance(node, str) else node


def load_compose(env: dict[str, str] | None = None, path: Path = COMPOSE_FILE) -> dict:
    """A compose file (the main one unless ``path``); interpolated with ``env`` when given (values
    only, as Compose does: comments and keys are left alone)."""
    document = yaml.safe_load(path.read_text())
    if env is not None:
        document = map_strings(document, lambda text: interpolate(text, env))
    return document


def compose_interpolations(path: Path = COMPOSE_FILE) -> list[tuple[str, str | None, str]]:
    """Every ``${...}`` in a compose file's values."""
    found: list[tuple[str, str | None, str]] = []
    map_strings(yaml.safe_load(path.read_text()), lambda text: found.extend(interpolations(text)))
    return found


def default_of(value: str) -> str:
    """``${VAR:-default}`` -> default; anything else unchanged."""
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(?P<default>[^}]*)\}", value)
    return match.group("default") if match else value


def fake_env() -> dict[str, str]:
    env = {name: secrets.token_hex(16) for name in REQUIRED_SECRETS}
    env["MINIO_ROOT_USER"] = "imgstack-admin"
    env["THUMBOR_S3_ACCESS_KEY"] = "imgstack-thumbor"
    return env


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="session")
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: jsonschema.Draft7Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(document)]
