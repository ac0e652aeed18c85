"""Shared fixtures: a REAL S3 server (SeaweedFS) for the session, Thumbor processes started with our
config against it, unique keys per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from thumbor_plugins import embedded

SECURITY_KEY = "test-security-key-0123456789abcdef"
EVENTS_TOKEN = "test-events-token-0123456789"
BUCKET = "images"
DERIVED = "images-derived"
OTHER_BUCKET = "other-bucket"
FIXTURES = Path(__import__("thumbor").__file__).parent / "fixtures" / "filters"


#: fixtures that start a real server (or install into a fresh virtualenv): a test that uses one,
#: directly or through another fixture, is an integration test. Tests that start one themselves
#: carry the marker explicitly.
SERVER_FIXTURES = {"s3_server", "thumbor_factory", "stack", "own_stack", "installed", "docker_daemon"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit and integration are told apart by the ``integration`` marker only, set here from
    what a test uses, so a pure test in a module of integration tests stays a unit test."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.S3Server]:
    server = embedded.start_s3(tmp_path_factory.mktemp("s3"))
    try:
        embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key,
                                [BUCKET, DERIVED, OTHER_BUCKET])
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(s3_server: embedded.S3Server):
    from thumbor_plugins.s3.settings import S3Settings
    from thumbor_plugins.s3.sync import client

    return client(S3Settings(endpoint_url=s3_server.endpoint_url, access_key=s3_server.access_key,
                             secret_key=s3_server.secret_key))


def thumbor_env(s3_server: embedded.S3Server, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSTACK_", "TC_AWS_", "AWS_"))}
    env.update(
        {
            "SECURITY_KEY": SECURITY_KEY,
            "IMGSTACK_EVENTS_TOKEN": EVENTS_TOKEN,
            "IMGSTACK_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "IMGSTACK_S3_ACCESS_KEY": s3_server.access_key,
            "IMGSTACK_S3_SECRET_KEY": s3_server.secret_key,
            "IMGSTACK_ALLOWED_BUCKETS": BUCKET,
            "IMGSTACK_DERIVED_BUCKET": DERIVED,
        }
    )
    env.update(overrides)
    return env


class ThumborFactory:
    """Thumbor processes by settings, started once each and stopped at the end of the session."""

    def __init__(self, s3_server: embedded.S3Server, logs: Path) -> None:
        self.s3_server = s3_server
        self.logs = logs
        self.running: dict[tuple, embedded.Thumbor] = {}

    def __call__(self, **overrides: str) -> embedded.Thumbor:
        key = tuple(sorted(overrides.items()))
        thumbor = self.running.get(key)
        if thumbor is None or not thumbor.process.alive():
            log = self.logs / f"thumbor-{len(self.running)}.log"
            thumbor = embedded.start_thumbor(thumbor_env(self.s3_server, **overrides), log)
            self.running[key] = thumbor
        return thumbor

    def stop_all(self) -> None:
        for thumbor in self.running.values():
            thumbor.stop()


@pytest.fixture(scope="session")
def thumbor_factory(s3_server: embedded.S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThumborFactory]:
    factory = ThumborFactory(s3_server, tmp_path_factory.mktemp("thumbor-logs"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def thumbor(thumbor_factory: ThumborFactory) -> embedded.Thumbor:
    return thumbor_factory()


def worker_pids(thumbor: embedded.Thumbor) -> list[int]:
    """The Thumbor worker processes under ``thumbor``'s supervisor (thumbor_plugins.serve)."""
    parent = thumbor.process.popen.pid
    children = Path(f"/proc/{parent}/task/{parent}/children")
    if not children.exists():
        return []
    return [int(pid) for pid in children.read_text().split()]


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


def sign(path_or_image: str, *, base: str, key: str = SECURITY_KEY, **options) -> str:
    """A signed URL for ``bucket/key`` (decoded) via the project's one URL builder."""
    from thumbor_plugins.urls import build_url

    return build_url(path_or_image, key=key, base=base, **options)
