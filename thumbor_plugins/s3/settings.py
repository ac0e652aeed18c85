"""Connection settings for S3, shared by the server (from Thumbor's config) and the CLI (from the
standard AWS environment variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_attempts: int = 2
    max_pool_connections: int = 32
    #: a profile of the AWS config and credentials files (``--profile``); None: botocore's own
    #: choice (``AWS_PROFILE``, else ``default``)
    profile: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> S3Settings:
        """From Thumbor's config, as :class:`thumbor_plugins.settings.Settings` reads it (typed,
        validated, the tc_aws names as aliases)."""
        from thumbor_plugins.settings import Settings

        settings = Settings.of(config)
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_attempts=settings.s3_max_attempts,
            max_pool_connections=settings.s3_max_pool_connections,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> S3Settings:
        """From the standard variables (AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION,
        AWS_MAX_ATTEMPTS); ``overrides`` (e.g. from CLI flags) win when not None.

        Credentials are not copied from the environment: botocore's own chain reads them, with
        everything that comes along (AWS_SESSION_TOKEN of assumed roles, SSO and CI OIDC,
        AWS_PROFILE, the config and credentials files, instance roles). Only explicit keys
        (``access_key``/``secret_key`` overrides, e.g. ``--access-key``) replace the chain; a
        ``profile`` override (``--profile``) is handed to that chain, as ``AWS_PROFILE`` is."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        }
        if (env.get("AWS_MAX_ATTEMPTS") or "").isdigit():
            values["max_attempts"] = max(1, int(env["AWS_MAX_ATTEMPTS"]))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_client("s3", **kwargs)`` (boto3 and aiobotocore alike).
        Path-style addressing: MinIO and SeaweedFS do not serve virtual-host buckets by default.
        The profile is not among them: it belongs to the session (see ``sync.client``)."""
        # imported here: importing the settings loads no SDK
        from botocore.config import Config as BotoConfig  # type: ignore[import-untyped, unused-ignore]

        kwargs: dict[str, Any] = {
            "region_name": self.region or "us-east-1",
            "config": BotoConfig(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                # total_max_attempts counts the first try (botocore's max_attempts does not)
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                max_pool_connections=self.max_pool_connections,
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        }
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key and self.secret_key:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = self.secret_key
        return kwargs
