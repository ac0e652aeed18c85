"""S3 errors as values our plugins map to HTTP statuses and the CLI to exit codes (hierarchy in
the package docstring)."""

from __future__ import annotations


class S3Error(Exception):
    status = 502
    #: S3's own error code when S3 answered (e.g. "NoSuchBucket", "SignatureDoesNotMatch")
    code = ""


class NotFound(S3Error):
    status = 404


class TooLarge(S3Error):
    status = 413

    def __init__(self, size: int | None, cap: int) -> None:
        super().__init__(f"object of {size if size is not None else 'unknown'} bytes is over the cap of {cap}")
        self.size = size
        self.cap = cap


class AccessDenied(S3Error):
    status = 502


class NoCredentials(AccessDenied):
    """No credentials were configured at all, or they cannot be loaded (an expired SSO session):
    nothing was sent."""


class ConfigError(AccessDenied):
    """The AWS configuration cannot be used: the profile named by ``--profile``/``AWS_PROFILE`` is
    in neither the config nor the credentials file, or a file cannot be parsed. Nothing was sent."""


class Unavailable(S3Error):
    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout

    @property
    def status(self) -> int:  # type: ignore[override]
        return 504 if self.timeout else 502


class DeleteFailed(Unavailable):
    """``DeleteObjects`` answered but refused some keys: ``failed`` maps each to S3's
    ``Code: Message``. The others were deleted."""

    def __init__(self, message: str, failed: dict[str, str]) -> None:
        super().__init__(message)
        self.failed = failed
