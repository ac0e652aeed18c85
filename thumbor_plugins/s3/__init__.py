"""The ONE place that talks to S3 (MinIO, SeaweedFS, AWS).

- :mod:`.settings`: :class:`S3Settings`, built from Thumbor's config (server) or the standard
  ``AWS_*`` environment (CLI).
- :mod:`.aio`: :class:`AsyncS3`, the server's async client: one per process (and event loop),
  created lazily, one connection pool, timeouts and bounded retries, typed results.
- :mod:`.sync`: :func:`client` for the CLI (boto3), same settings, same addressing.

Errors (``thumbor_plugins.s3.errors``)::

    S3Error
     ├── NotFound       no such key / no such bucket            (404)
     ├── TooLarge       object larger than the caller's byte cap (413)
     ├── AccessDenied   credentials refused                     (502: our side is misconfigured)
 │    └── NoCredentials  none configured
     └── Unavailable    cannot reach S3 / S3 errored            (502), .timeout=True (504)
"""

from .errors import AccessDenied, NoCredentials, NotFound, S3Error, TooLarge, Unavailable
from .settings import S3Settings
from .types import ObjectData, ObjectInfo

__all__ = [
    "AccessDenied",
    "NoCredentials",
    "NotFound",
    "ObjectData",
    "ObjectInfo",
    "S3Error",
    "S3Settings",
    "TooLarge",
    "Unavailable",
]
