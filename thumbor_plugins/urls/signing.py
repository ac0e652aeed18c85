"""URL signatures, exactly Thumbor's: base64url (with ``=`` padding) of HMAC(key, path as UTF-8),
where path is everything after ``/<signature>/``. SHA1 is Thumbor's and every client's; SHA256 is
our optional stronger mode. Several keys may be active (rotation): the first signs, all verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def _key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")  # like Thumbor's url_signer (libthumbor's CryptoURL: latin-1)
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")  # bytes(5) is 5 NULs


class Signer:
    """Signs with ``keys[0]``; verifies against every key.

    ValueError for an unknown algorithm, no keys, or an empty key (an empty HMAC key is a key
    anyone can guess: refusing it at start-up beats running effectively unsigned).
    """

    def __init__(self, keys: Sequence[str | bytes], algorithm: str = "sha1") -> None:
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be a sequence of keys, not a single key")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown signature algorithm {algorithm!r}; use one of {sorted(ALGORITHMS)}")
        self._keys = tuple(_key_bytes(k) for k in keys)
        if not self._keys:
            raise ValueError("at least one signing key is required")
        if not all(self._keys):
            raise ValueError("signing keys must not be empty")
        self.algorithm = algorithm
        self._digest = ALGORITHMS[algorithm]

    def __repr__(self) -> str:  # never the keys
        return f"Signer(<{len(self._keys)} key(s)>, algorithm={self.algorithm!r})"

    def _sign(self, key: bytes, path: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(key, path, self._digest).digest())

    def sign(self, path: str) -> str:
        """The signature of ``path`` (everything after ``/<signature>/``) with the first key."""
        return self._sign(self._keys[0], path.encode("utf-8")).decode("ascii")

    def verify(self, signature: str, path: str) -> bool:
        """True if any key signed exactly ``path``. Constant-time; False (never raises) on junk."""
        try:
            given = signature.encode("utf-8")
            message = path.encode("utf-8")
        except (AttributeError, UnicodeError):
            return False
        valid = False
        for key in self._keys:  # no early exit: timing must not reveal which key matched
            valid |= hmac.compare_digest(self._sign(key, message), given)
        return valid
