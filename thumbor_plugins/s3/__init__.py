"""The ONE place that talks to S3 (MinIO, SeaweedFS, AWS).

- :mod:`.settings`: :class:`S3Settings`, built from Thumbor's config (server) or the standard
  ``AWS_*`` environment and the CLI's flags (``--profile``, ``--endpoint-url``, ...).
- :mod:`.aio`: :class:`~.aio.AsyncS3`, the server's async client: one per process (and event
  loop), created lazily, one connection pool, timeouts and bounded retries, typed results.
- :mod:`.sync`: the CLI's blocking client (boto3), same settings, same addressing, and the calls
  every command shares: :func:`~.sync.list_prefix`, :func:`~.sync.delete_keys`.
- :mod:`.location`: :class:`S3Path`, the one parser of ``s3://BUCKET/KEY`` and ``BUCKET/KEY``.

Importing this package (or :mod:`.location`, :mod:`.errors`) loads no S3 SDK: ``imgstack url``
stays light.

Errors (``thumbor_plugins.s3.errors``)::

    S3Error
     ├── NotFound       no such key / no such bucket            (404)
     ├── TooLarge       object larger than the caller's byte cap (413)
     ├── AccessDenied   credentials refused                     (502: our side is misconfigured)
     │    ├── NoCredentials  none configured, or they cannot be loaded
     │    └── ConfigError    unknown profile, unreadable AWS config file
     └── Unavailable    cannot reach S3 / S3 errored            (502), .timeout=True (504)
          └── DeleteFailed   DeleteObjects refused some keys (.failed: key -> reason)
"""

from .errors import (
    AccessDenied,
    ConfigError,
    DeleteFailed,
    NoCredentials,
    NotFound,
    S3Error,
    TooLarge,
    Unavailable,
)
from .location import BadLocation, S3Path
from .settings import S3Settings
from .types import ObjectData, ObjectInfo

__all__ = [
    "AccessDenied",
    "BadLocation",
    "ConfigError",
    "DeleteFailed",
    "NoCredentials",
    "NotFound",
    "ObjectData",
    "ObjectInfo",
    "S3Error",
    "S3Path",
    "S3Settings",
    "TooLarge",
    "Unavailable",
]
