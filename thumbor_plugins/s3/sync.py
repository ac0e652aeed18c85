"""Blocking S3 client for the CLI (boto3), built from the same :class:`S3Settings`."""

from __future__ import annotations

from typing import Any

from .settings import S3Settings


def client(settings: S3Settings) -> Any:
    """A boto3 S3 client. One per command; boto3 clients are thread-safe, so parallel transfers
    share it (and its connection pool)."""
    import boto3

    return boto3.session.Session().client("s3", **settings.client_kwargs())


def translate(error: Exception) -> Exception:
    """Map a botocore error to our S3Error hierarchy (for messages the CLI prints)."""
    from .aio import _translate

    return _translate(error)


def transfer_config(*, multipart_threshold: int, part_size: int, concurrency: int = 4) -> Any:
    """boto3's multipart settings for ``upload_file``/``download_file``."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=part_size,
                          max_concurrency=concurrency)
