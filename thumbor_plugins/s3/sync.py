"""The CLI's blocking S3 client (boto3), built from the same :class:`S3Settings`, and the calls
every command shares: :func:`list_prefix` (the one paginated listing) and :func:`delete_keys`.
Errors are raised as :mod:`.errors` classes (:func:`translate` maps any other failure)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._shared import DELETE_BATCH, delete_errors, delete_request, list_kwargs, read_page
from ._shared import translate as _translate
from .errors import S3Error
from .settings import S3Settings
from .types import ObjectInfo

__all__ = ["client", "delete_keys", "list_prefix", "transfer_config", "translate"]


def client(settings: S3Settings) -> Any:
    """A boto3 S3 client. One per command; boto3 clients are thread-safe, so parallel transfers
    share it (and its connection pool). The profile (``settings.profile``, else ``AWS_PROFILE``)
    is botocore's: its credentials, and its region when the settings name none. Raises
    :class:`~.errors.ConfigError` for an unknown profile."""
    import boto3  # type: ignore[import-untyped, unused-ignore]

    try:
        session = boto3.session.Session(profile_name=settings.profile)
        kwargs = settings.client_kwargs()
        if settings.region is None and session.region_name:
            kwargs["region_name"] = session.region_name
        return session.client("s3", **kwargs)
    except Exception as error:  # noqa: BLE001 - translated into our hierarchy
        raise _translate(error) from error


def translate(error: BaseException) -> S3Error:
    """Map a botocore error to our S3Error hierarchy (for messages the CLI prints)."""
    return _translate(error)


def list_prefix(s3: Any, bucket: str, prefix: str = "", *, delimiter: str | None = None) -> Iterator[ObjectInfo]:
    """Every object under ``prefix``, page by page (1000 keys a request), in key order; with
    ``delimiter``, only those with no delimiter after the prefix (a "folder"'s direct children).
    Folder markers (``photos/``) are objects too: callers that want files skip keys ending in
    ``/``. Raises :class:`~.errors.S3Error` (no such bucket: :class:`~.errors.NotFound`)."""
    token: str | None = None
    while True:
        try:
            page = s3.list_objects_v2(**list_kwargs(bucket, prefix, delimiter, token))
        except Exception as error:  # noqa: BLE001 - translated into our hierarchy
            raise _translate(error) from error
        objects, token = read_page(bucket, page)
        yield from objects
        if token is None:
            return


def delete_keys(s3: Any, bucket: str, keys: list[str]) -> dict[str, str]:
    """Delete ``keys`` (batches of 1000, one request each). Returns the keys S3 refused, each with
    its reason (``Code: Message``), the others being deleted; a batch that fails as a whole raises
    :class:`~.errors.S3Error` (earlier batches stay deleted)."""
    failed: dict[str, str] = {}
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        try:
            response = s3.delete_objects(Bucket=bucket, Delete=delete_request(batch))
        except Exception as error:  # noqa: BLE001 - translated into our hierarchy
            raise _translate(error) from error
        failed.update(delete_errors(response))
    return failed


def transfer_config(*, multipart_threshold: int, part_size: int, concurrency: int = 4) -> Any:
    """boto3's multipart settings for ``upload_file``/``download_file``."""
    from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped, unused-ignore]

    return TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=part_size,
                          max_concurrency=concurrency)
