"""``compose/thumbor/Dockerfile`` and its build-context ignore file: a pinned base, non-root,
a HEALTHCHECK, this repo installed from the production lock and Thumbor as the command."""

from __future__ import annotations

import json
import re

from .conftest import DOCKERFILE


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_pins_its_base_by_tag():
    bases = [rest.split()[0] for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.partition(":")
        assert name == "python" and tag and "latest" not in tag, base
        assert re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), base


def test_dockerfile_runs_as_non_root():
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # the last USER comes after everything that needs root
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:]


def test_dockerfile_installs_this_repo_and_runs_thumbor():
    instructions = dockerfile_instructions()
    copies = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for source in ("pyproject.toml", "thumbor_plugins/", "config/"):
        assert source in copies, source
    assert any(keyword == "RUN" and "pip install" in rest for keyword, rest in instructions)
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["python", "-m", "thumbor_plugins.serve", "--port", "8888",
                               "--conf", "/app/config/thumbor.conf"]
    health = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert health and "http://127.0.0.1:8888/healthcheck'" in health[-1]


def test_build_context_ignore_file_keeps_what_the_dockerfile_copies():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    for source in ("pyproject.toml", "thumbor_plugins/", "config/"):
        assert f"!{source}" in ignore


def test_dockerfile_installs_the_production_lock_then_the_project_alone():
    """The image gets exactly the locked versions, each file checked against its hash; the project
    itself is installed without resolving anything more."""
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    assert len(runs) == 2, runs
    locked, project = runs
    assert "--require-hashes -r requirements/production.txt" in locked
    assert "--no-deps ." in project
    copies = [rest for keyword, rest in dockerfile_instructions() if keyword == "COPY"]
    assert copies[0] == "requirements/production.txt requirements/"  # its layer outlives code changes
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!requirements/production.txt" in ignore
