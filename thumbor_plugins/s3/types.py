"""Typed results of S3 calls."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str  # without quotes
    last_modified: datetime.datetime | None = None


@dataclass(frozen=True)
class ObjectData:
    body: bytes
    etag: str
    content_type: str | None
    last_modified: datetime.datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
