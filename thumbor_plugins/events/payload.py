"""MinIO's bucket-notification payload -> the object events imgstack acts on.

Pure (no Thumbor, no S3). The payload is what MinIO's webhook target POSTs
(``../shared/minio-events/``): ``{"Records": [{"eventName": ..., "s3": {"bucket": {"name": ...},
"object": {"key": <query-escaped>}}}, ...]}``. Keys are Go ``url.QueryEscape``-d (space is ``+``,
``+`` is ``%2B``, ``/`` is ``%2F``) and decoded here exactly once with ``unquote_plus``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

#: an upload (any content-changing ``s3:ObjectCreated:*``): purge old variants, render presets
WARM = "warm"
#: a delete (any ``s3:ObjectRemoved:*``): purge every variant
PURGE = "purge"

_CREATED = "s3:ObjectCreated:"
_REMOVED = "s3:ObjectRemoved:"
#: ``s3:ObjectCreated:*`` events that change metadata only: the image is the same, nothing to redo
METADATA_ONLY = frozenset({"PutTagging", "DeleteTagging", "PutRetention", "PutLegalHold"})


#: records one notification may carry (MinIO sends one)
MAX_RECORDS = 100


class PayloadError(ValueError):
    """A body that is not a MinIO notification payload (the endpoint answers 400)."""


@dataclass(frozen=True)
class ObjectEvent:
    """One record of a notification: ``action`` is :data:`WARM`, :data:`PURGE` or None (an event
    imgstack ignores); ``key`` is decoded."""

    name: str
    bucket: str
    key: str
    action: str | None


def action_for(event_name: str) -> str | None:
    """:data:`WARM`, :data:`PURGE`, or None for events that do not change what an image looks like."""
    if event_name.startswith(_CREATED):
        return None if event_name[len(_CREATED):] in METADATA_ONLY else WARM
    if event_name.startswith(_REMOVED):
        return PURGE
    return None


def _field(record: dict, *path: str) -> str:
    value: object = record
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise PayloadError(f"record without {'.'.join(path)}")
        value = value[name]
    if not isinstance(value, str):
        raise PayloadError(f"{'.'.join(path)} is not a string")
    return value


def load_json(body: bytes | str) -> object:
    """The JSON document of an event body; :class:`PayloadError` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise PayloadError(f"not JSON: {error}") from None
    except RecursionError:
        raise PayloadError("not JSON: nested too deeply") from None


def parse_payload(body: bytes | str) -> list[ObjectEvent]:
    """Every record of a notification, in order. Raises :class:`PayloadError` for anything that is
    not JSON of that shape (so a broken sender is told, rather than silently ignored)."""
    document = load_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise PayloadError("expected an object with a Records list")
    if len(document["Records"]) > MAX_RECORDS:
        # MinIO sends one record per event; a body of thousands would fill the queue at once
        raise PayloadError(f"{len(document['Records'])} records: at most {MAX_RECORDS} per event")
    events = []
    for record in document["Records"]:
        if not isinstance(record, dict):
            raise PayloadError("a record is not an object")
        name = _field(record, "eventName")
        bucket = _field(record, "s3", "bucket", "name")
        key = unquote_plus(_field(record, "s3", "object", "key"))
        events.append(ObjectEvent(name=name, bucket=bucket, key=key, action=action_for(name)))
    return events
