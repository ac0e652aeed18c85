"""The job model: what one object event asks the server to do.

A :class:`Job` is an action (:data:`~.payload.WARM` or :data:`~.payload.PURGE`) on one original.
:func:`jobs_for` turns notification records into jobs, dropping (and logging) what imgstack must not
act on: other event types, buckets outside the allow-list, keys the loader would refuse (``..``
segments, control characters), and objects no URL of this server can name (outside
``IMGSTACK_BUCKET`` / ``IMGSTACK_LOADER_ROOT_PATH``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .. import sources
from ..settings import Settings
from .payload import ObjectEvent

logger = logging.getLogger("imgstack.events")


@dataclass(frozen=True)
class Job:
    """``image`` is the decoded image part of this server's URLs for ``source`` (``bucket/key``,
    or the key alone under a fixed bucket)."""

    action: str
    source: sources.Source
    image: str


def image_of(bucket: str, key: str, *, fixed_bucket: str | None = None, root_path: str = "") -> str | None:
    """The decoded image part a URL uses for ``bucket/key``, or None when no URL can reach it.
    The inverse of :func:`thumbor_plugins.sources.locate`."""
    if root_path:
        root = root_path.strip("/") + "/"
        if not key.startswith(root):
            return None
        key = key[len(root):]
    if fixed_bucket:
        return key if bucket == fixed_bucket else None
    return f"{bucket}/{key}"


def job_for(event: ObjectEvent, settings: Settings) -> Job | None:
    """The job for one record under the server's settings, or None (logged) when there is nothing to do."""
    if event.action is None:
        logger.info("event %s on %s/%s ignored: not an upload or a delete", event.name, event.bucket, event.key)
        return None
    image = image_of(event.bucket, event.key, fixed_bucket=settings.bucket, root_path=settings.loader_root_path)
    if image is None:
        logger.info("event on %s/%s ignored: outside the served bucket/root path", event.bucket, event.key)
        return None
    try:
        # the very check a request goes through, on the image part a URL carries (build_url's escaping)
        source = sources.locate_for(quote(image, safe="/"), settings)
    except sources.SourceError as error:
        # another bucket is routine (a broad subscription); a key no URL may name is worth a look
        log = logger.info if error.status == 404 else logger.warning
        log("event on %r/%r ignored: %s", event.bucket, event.key, error)
        return None
    if source != sources.Source(event.bucket, event.key):
        logger.warning("event on %r/%r ignored: URLs name it %r", event.bucket, event.key, source)
        return None
    return Job(event.action, source, image)


def jobs_for(events: Iterable[ObjectEvent], settings: Settings) -> list[Job]:
    """Jobs for the records, in order (duplicates kept: the queue coalesces them)."""
    return [job for job in (job_for(event, settings) for event in events) if job is not None]
