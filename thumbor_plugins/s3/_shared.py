"""What the async client (:mod:`.aio`) and the blocking one (:mod:`.sync`) share: botocore's
errors translated into :mod:`.errors`, listing items as :class:`ObjectInfo`, the per-key errors
of ``DeleteObjects``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import AccessDenied, ConfigError, DeleteFailed, NoCredentials, NotFound, S3Error, Unavailable
from .settings import S3Settings
from .types import ObjectInfo

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
NO_CREDENTIALS = ("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                  "or a profile (AWS_PROFILE, --profile)")
#: DeleteObjects takes at most this many keys
DELETE_BATCH = 1000


def translate(error: BaseException) -> S3Error:
    """Our :class:`S3Error` for any failure of a call to S3 (botocore's, a timeout, a socket's)."""
    from botocore import exceptions as boto  # type: ignore[import-untyped, unused-ignore]

    if isinstance(error, S3Error):
        return error
    if isinstance(error, (asyncio.TimeoutError, boto.ConnectTimeoutError, boto.ReadTimeoutError)):
        return Unavailable(f"S3 timed out: {error}", timeout=True)
    if isinstance(error, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return NoCredentials(NO_CREDENTIALS)
    if isinstance(error, boto.ProfileNotFound):
        return ConfigError(f"AWS profile {error.kwargs.get('profile')!r} not found in the AWS config or "
                           "credentials file (--profile, AWS_PROFILE; AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)")
    if isinstance(error, (boto.ConfigParseError, boto.ConfigNotFound, boto.InvalidConfigError)):
        return ConfigError(f"the AWS configuration cannot be used: {error}")
    if isinstance(error, (boto.SSOError, boto.TokenRetrievalError)):
        return NoCredentials(f"S3 credentials cannot be loaded: {error}")
    if isinstance(error, boto.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return answered(code, status if isinstance(status, int) else None, f"S3 error {code}: {error}")
    if isinstance(error, (boto.ConnectionError, boto.BotoCoreError, OSError)):
        return Unavailable(f"S3 unreachable: {error}")
    return Unavailable(f"S3 failed: {error!r}")


def answered(code: str, status: int | None, message: str) -> S3Error:
    """The error for an error answer of S3: by S3's code, else its HTTP status; ``message`` for
    any other (:class:`Unavailable`). ``.code`` is S3's code."""
    error: S3Error
    if code in _NOT_FOUND_CODES or status == 404:
        error = NotFound(code)
    elif code in _DENIED_CODES or status == 403:
        error = AccessDenied(code)
    else:
        error = Unavailable(message)
    error.code = code
    return error


def aio_session(settings: S3Settings) -> Any:
    """An aiobotocore session on the settings' profile (None: botocore's own choice)."""
    from aiobotocore.session import get_session  # type: ignore[import-untyped, unused-ignore]

    created = get_session()
    if settings.profile:
        created.set_config_variable("profile", settings.profile)
    return created


def object_info(bucket: str, item: Mapping[str, Any]) -> ObjectInfo:
    """One ``Contents`` entry of a ``ListObjectsV2`` page."""
    return ObjectInfo(
        bucket=bucket,
        key=str(item["Key"]),
        size=int(item.get("Size", 0)),
        etag=str(item.get("ETag", "")).strip('"'),
        last_modified=item.get("LastModified"),
    )


def read_page(bucket: str, page: Mapping[str, Any]) -> tuple[list[ObjectInfo], str | None]:
    """The objects of one ``ListObjectsV2`` answer, and the token of the next page (None: the last)."""
    token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
    return [object_info(bucket, item) for item in page.get("Contents") or ()], token


def list_kwargs(bucket: str, prefix: str, delimiter: str | None, token: str | None) -> dict[str, Any]:
    """``ListObjectsV2``'s arguments for one page."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    if token:
        kwargs["ContinuationToken"] = token
    return kwargs


def delete_request(keys: Sequence[str]) -> dict[str, Any]:
    """``DeleteObjects``' ``Delete`` argument (quiet: only the failures are answered)."""
    return {"Objects": [{"Key": key} for key in keys], "Quiet": True}


def delete_errors(response: Mapping[str, Any]) -> dict[str, str]:
    """The keys ``DeleteObjects`` refused (it answers 200 and lists them), with ``Code: Message``."""
    return {str(e.get("Key")): f"{e.get('Code')}: {e.get('Message')}" for e in response.get("Errors") or ()}


def raise_for_delete_errors(failed: dict[str, str], total: int) -> None:
    if failed:
        key, reason = next(iter(failed.items()))
        raise DeleteFailed(f"S3 refused to delete {len(failed)} of {total} objects, e.g. {key!r}: {reason}", failed)
