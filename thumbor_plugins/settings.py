"""Every setting imgstack reads, ours (``IMGSTACK_*``) and Thumbor's, as one frozen, typed object
built once per Thumbor config.

    settings_of(context).max_pixels              # in a Thumbor plugin (loader, engine, handler)
    Settings.of(config).derived_bucket           # with a config object only
    Settings.of(config, security_key=key).validate()   # at start-up: refuse what cannot run

Names: a field is its setting's name in lower case without ``IMGSTACK_`` (``IMGSTACK_MAX_PIXELS``
is ``max_pixels``, Thumbor's ``MAX_AGE`` is ``max_age``); the setting's name and description are
defined once, in :mod:`thumbor_plugins.config`. Defaults are those of the definitions (a test
holds them together), so ``Settings(...)`` with a few values is what a config with those values
gives.

Conversion, once: text (an environment variable, Thumbor's ``--use-environment``) and Python
values alike become the field's type; lists are comma-separated text or sequences; a value that
does not fit is a :class:`SettingError` naming the setting. :meth:`Settings.validate` adds what a
server must not start with (a missing, default or short signing key, an empty presets file under
``IMGSTACK_ONLY_PRESETS``).

The tc_aws plugin's names (:data:`SEED_ALIASES`) are read here, in this one place: a seed
name counts only when our own name was not given to the config (by its file, its keywords or the
environment), so our name wins even when it is set to its default.

Pure: no Thumbor import (a config is read by attribute).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import presets as _presets
from .clients import Network, networks
from .urls import Params, Signer

__all__ = [
    "DEFAULT_KEYS",
    "MIN_KEY_LENGTH",
    "SEED_ALIASES",
    "SettingError",
    "Settings",
    "parse_flag",
    "settings_of",
    "split_names",
]

logger = logging.getLogger("imgstack")

MIB = 1024 * 1024
#: keys that are no secret: unset, and the one Thumbor's documentation publishes
DEFAULT_KEYS = frozenset({"", "MY_SECURE_KEY"})
#: signing keys shorter than this are refused at start
MIN_KEY_LENGTH = 32

#: seed (tc_aws) name -> our name
SEED_ALIASES: Mapping[str, str] = types.MappingProxyType({
    "TC_AWS_ENDPOINT": "IMGSTACK_S3_ENDPOINT_URL",
    "TC_AWS_REGION": "IMGSTACK_S3_REGION",
    "TC_AWS_LOADER_BUCKET": "IMGSTACK_BUCKET",
    "TC_AWS_LOADER_ROOT_PATH": "IMGSTACK_LOADER_ROOT_PATH",
    "TC_AWS_ALLOWED_BUCKETS": "IMGSTACK_ALLOWED_BUCKETS",
})
_SEED_OF = {ours: seed for seed, ours in SEED_ALIASES.items()}


class SettingError(ValueError):
    """A setting the service cannot run with; the message names it and says what it expects."""


# --- text and values -> types (each raises SettingError naming the setting) -------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_flag(name: str, value: object) -> bool:
    """``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off`` (any case), or a Python value."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SettingError(f"{name}={value!r}: expected true or false")
    return bool(value)


def split_names(value: object) -> tuple[str, ...]:
    """``"a, b,,c"`` or ``["a", " b"]`` -> ``("a", "b", "c")``; None -> ``()``."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        items = [items]
    return tuple(text for text in (str(item).strip() for item in items) if text)


def _names(name: str, value: object) -> tuple[str, ...]:  # noqa: ARG001 - a parser's signature
    return split_names(value)


def _number(name: str, value: object, kind: Callable[[Any], Any], expected: str) -> Any:
    if value is None or value == "":
        return kind(0)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingError(f"{name}={value!r}: expected {expected}")
    try:
        number = kind(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected {expected}") from None
    if kind is int and isinstance(value, float) and number != value:
        raise SettingError(f"{name}={value!r}: expected {expected}")
    if number < 0:
        raise SettingError(f"{name}={value!r}: must be 0 or more")
    return number


def _whole(name: str, value: object) -> int:
    result: int = _number(name, value, int, "a whole number")
    return result


def _whole_or_none(name: str, value: object) -> int | None:
    return None if value is None else _whole(name, value)


def _real(name: str, value: object) -> float:
    result: float = _number(name, value, float, "a number")
    return result


def _text_or_none(name: str, value: object) -> str | None:
    """Text; None, ``""`` and False (Thumbor's "off") are None."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, bytes):
        return value.decode()
    if not isinstance(value, str):
        raise SettingError(f"{name}: expected text, got {type(value).__name__}")
    return value


def _text(name: str, value: object) -> str:
    return _text_or_none(name, value) or ""


def _as_is(name: str, value: object) -> object:  # noqa: ARG001 - a parser's signature
    return value


def _proxies(name: str, value: object) -> tuple[Network, ...]:  # noqa: ARG001 - a parser's signature
    try:
        return networks(split_names(value))
    except ValueError as error:
        raise SettingError(str(error)) from None


def _setting(name: str, default: Any, parse: Callable[[str, object], Any], *, secret: bool = False) -> Any:
    """A field read from the config setting ``name`` with ``parse``."""
    return field(default=default, repr=not secret, metadata={"name": name, "parse": parse})


_THUMBOR_HANDLER_LISTS = ("thumbor.handler_lists.healthcheck", "thumbor.handler_lists.upload",
                          "thumbor.handler_lists.blacklist")


@dataclass(frozen=True, slots=True)
class Settings:
    """imgstack's settings and the Thumbor settings its modules read (grouped as in
    :mod:`thumbor_plugins.config`; descriptions there)."""

    # --- S3 ---
    s3_endpoint_url: str | None = _setting("IMGSTACK_S3_ENDPOINT_URL", None, _text_or_none)
    s3_region: str | None = _setting("IMGSTACK_S3_REGION", None, _text_or_none)
    s3_access_key: str | None = _setting("IMGSTACK_S3_ACCESS_KEY", None, _text_or_none, secret=True)
    s3_secret_key: str | None = _setting("IMGSTACK_S3_SECRET_KEY", None, _text_or_none, secret=True)
    s3_connect_timeout: float = _setting("IMGSTACK_S3_CONNECT_TIMEOUT", 2.0, _real)
    s3_read_timeout: float = _setting("IMGSTACK_S3_READ_TIMEOUT", 10.0, _real)
    s3_max_attempts: int = _setting("IMGSTACK_S3_MAX_ATTEMPTS", 2, _whole)
    s3_max_pool_connections: int = _setting("IMGSTACK_S3_MAX_POOL_CONNECTIONS", 32, _whole)

    # --- Loader ---
    #: the fixed originals bucket (the whole image path is the key); None: the path names it
    bucket: str | None = _setting("IMGSTACK_BUCKET", None, _text_or_none)
    loader_root_path: str = _setting("IMGSTACK_LOADER_ROOT_PATH", "", _text)
    allowed_buckets: tuple[str, ...] = _setting("IMGSTACK_ALLOWED_BUCKETS", ("images",), _names)
    max_source_bytes: int = _setting("IMGSTACK_MAX_SOURCE_BYTES", 512 * MIB, _whole)
    spool_bytes: int = _setting("IMGSTACK_SPOOL_BYTES", 16 * MIB, _whole)
    spool_dir: str | None = _setting("IMGSTACK_SPOOL_DIR", None, _text_or_none)
    originals_cache_bytes: int = _setting("IMGSTACK_ORIGINALS_CACHE_BYTES", 64 * MIB, _whole)
    max_filters: int = _setting("IMGSTACK_MAX_FILTERS", 10, _whole)
    render_timeout: float = _setting("IMGSTACK_RENDER_TIMEOUT", 30.0, _real)
    fallback_image: str | None = _setting("IMGSTACK_FALLBACK_IMAGE", None, _text_or_none)

    # --- Result storage ---
    derived_bucket: str = _setting("IMGSTACK_DERIVED_BUCKET", "images-derived", _text)
    revalidate_originals: bool = _setting("IMGSTACK_REVALIDATE_ORIGINALS", False, parse_flag)
    hot_results_bytes: int = _setting("IMGSTACK_HOT_RESULTS_BYTES", 32 * MIB, _whole)
    hot_results_seconds: float = _setting("IMGSTACK_HOT_RESULTS_SECONDS", 10.0, _real)

    # --- Private links ---
    signature_algorithm: str = _setting("IMGSTACK_SIGNATURE_ALGORITHM", "sha1", _text)
    verify_keys: tuple[str, ...] = _setting("IMGSTACK_VERIFY_KEYS", (), _names, secret=True)
    require_expires: bool = _setting("IMGSTACK_REQUIRE_EXPIRES", False, parse_flag)
    max_link_lifetime: int = _setting("IMGSTACK_MAX_LINK_LIFETIME", 0, _whole)

    # --- Delivery ---
    max_pixels: int = _setting("IMGSTACK_MAX_PIXELS", 500_000_000, _whole)
    max_decode_memory: int = _setting("IMGSTACK_MAX_DECODE_MEMORY", 320 * MIB, _whole)
    max_decompression_ratio: float = _setting("IMGSTACK_MAX_DECOMPRESSION_RATIO", 250.0, _real)
    mezzanine_min_pixels: int = _setting("IMGSTACK_MEZZANINE_MIN_PIXELS", 40_000_000, _whole)
    mezzanine_quality: int = _setting("IMGSTACK_MEZZANINE_QUALITY", 95, _whole)
    max_frames: int = _setting("IMGSTACK_MAX_FRAMES", 1000, _whole)
    jpeg_shrink_on_load: bool = _setting("IMGSTACK_JPEG_SHRINK_ON_LOAD", True, parse_flag)
    jpeg_skip_scans: bool = _setting("IMGSTACK_JPEG_SKIP_SCANS", True, parse_flag)
    avif_effort: int = _setting("IMGSTACK_AVIF_EFFORT", 2, _whole)
    render_niceness: int = _setting("IMGSTACK_RENDER_NICENESS", 10, _whole)
    vips_concurrency: int = _setting("IMGSTACK_VIPS_CONCURRENCY", 2, _whole)
    processes: int = _setting("IMGSTACK_PROCESSES", 0, _whole)
    presets_file: str | None = _setting("IMGSTACK_PRESETS_FILE", None, _text_or_none)
    only_presets: bool = _setting("IMGSTACK_ONLY_PRESETS", False, parse_flag)
    versioned_max_age: int = _setting("IMGSTACK_VERSIONED_MAX_AGE", 31536000, _whole)
    max_concurrent_requests: int = _setting("IMGSTACK_MAX_CONCURRENT_REQUESTS", 64, _whole)

    # --- Events ---
    events_token: str | None = _setting("IMGSTACK_EVENTS_TOKEN", None, _text_or_none, secret=True)
    events_max_body_bytes: int = _setting("IMGSTACK_EVENTS_MAX_BODY_BYTES", 4 * MIB, _whole)
    events_queue_size: int = _setting("IMGSTACK_EVENTS_QUEUE_SIZE", 256, _whole)
    events_workers: int = _setting("IMGSTACK_EVENTS_WORKERS", 2, _whole)

    # --- Operations ---
    metrics_token: str | None = _setting("IMGSTACK_METRICS_TOKEN", None, _text_or_none, secret=True)
    access_log: bool = _setting("IMGSTACK_ACCESS_LOG", True, parse_flag)
    trusted_proxies: tuple[Network, ...] = _setting("IMGSTACK_TRUSTED_PROXIES", (), _proxies)
    access_log_file: str | None = _setting("IMGSTACK_ACCESS_LOG_FILE", None, _text_or_none)

    # --- Thumbor's ---
    #: the key links are signed with: Thumbor's ``--keyfile`` when given, else SECURITY_KEY
    security_key: str | None = _setting("SECURITY_KEY", None, _text_or_none, secret=True)
    allow_unsafe_url: bool = _setting("ALLOW_UNSAFE_URL", True, parse_flag)
    #: the engine module (``thumbor_plugins.vips_engine`` streams what it can)
    engine: str = _setting("ENGINE", "thumbor.engines.pil", _text)
    result_storage: str | None = _setting("RESULT_STORAGE", None, _text_or_none)
    result_storage_stores_unsafe: bool = _setting("RESULT_STORAGE_STORES_UNSAFE", False, parse_flag)
    result_storage_expiration_seconds: int = _setting("RESULT_STORAGE_EXPIRATION_SECONDS", 0, _whole)
    auto_avif: bool = _setting("AUTO_AVIF", False, parse_flag)
    auto_webp: bool = _setting("AUTO_WEBP", False, parse_flag)
    max_age: int = _setting("MAX_AGE", 86400, _whole)
    max_age_temp_image: int = _setting("MAX_AGE_TEMP_IMAGE", 0, _whole)
    enable_etags: bool = _setting("ENABLE_ETAGS", True, parse_flag)
    send_if_modified_last_modified_headers: bool = _setting(
        "SEND_IF_MODIFIED_LAST_MODIFIED_HEADERS", False, parse_flag)
    meta_callback_name: str | None = _setting("META_CALLBACK_NAME", None, _text_or_none)
    #: None: no Access-Control-Allow-Origin header (Thumbor's False)
    access_control_allow_origin_header: str | None = _setting(
        "ACCESS_CONTROL_ALLOW_ORIGIN_HEADER", None, _text_or_none)
    max_width: int = _setting("MAX_WIDTH", 0, _whole)
    max_height: int = _setting("MAX_HEIGHT", 0, _whole)
    healthcheck_route: str = _setting("HEALTHCHECK_ROUTE", "/healthcheck/?", _text)
    handler_lists: tuple[str, ...] = _setting("HANDLER_LISTS", _THUMBOR_HANDLER_LISTS, _names)
    quality: int = _setting("QUALITY", 80, _whole)
    png_compression_level: int | None = _setting("PNG_COMPRESSION_LEVEL", 6, _whole_or_none)
    avif_speed: int | None = _setting("AVIF_SPEED", None, _whole_or_none)
    progressive_jpeg: bool = _setting("PROGRESSIVE_JPEG", True, parse_flag)
    preserve_exif_info: bool = _setting("PRESERVE_EXIF_INFO", False, parse_flag)
    preserve_exif_copyright_info: bool = _setting("PRESERVE_EXIF_COPYRIGHT_INFO", False, parse_flag)
    preserve_iptc_info: bool = _setting("PRESERVE_IPTC_INFO", False, parse_flag)
    pillow_preserve_indexed_mode: bool = _setting("PILLOW_PRESERVE_INDEXED_MODE", True, parse_flag)
    #: Pillow's own values (a number, a name, tables): passed on unchanged
    pillow_jpeg_subsampling: object = _setting("PILLOW_JPEG_SUBSAMPLING", None, _as_is)
    pillow_jpeg_qtables: object = _setting("PILLOW_JPEG_QTABLES", None, _as_is)

    # --- read from the settings above ---
    #: the presets of ``presets_file`` (the shipped ones when None): name -> transformation
    presets: Mapping[str, Params] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.signature_algorithm not in ("sha1", "sha256"):
            raise SettingError("IMGSTACK_SIGNATURE_ALGORITHM must be sha1 or sha256")
        for name, value, low, high in (
            ("IMGSTACK_S3_MAX_ATTEMPTS", self.s3_max_attempts, 1, None),
            ("IMGSTACK_S3_MAX_POOL_CONNECTIONS", self.s3_max_pool_connections, 1, None),
            ("IMGSTACK_EVENTS_QUEUE_SIZE", self.events_queue_size, 1, None),
            ("IMGSTACK_EVENTS_WORKERS", self.events_workers, 1, None),
            ("IMGSTACK_AVIF_EFFORT", self.avif_effort, 0, 9),
            ("IMGSTACK_RENDER_NICENESS", self.render_niceness, 0, 19),
            ("IMGSTACK_VIPS_CONCURRENCY", self.vips_concurrency, 1, 64),
        ):
            if value < low or (high is not None and value > high):
                bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
                raise SettingError(f"{name}={value}: must be {bounds}")

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, *, security_key: str | bytes | None = None) -> Settings:
        """From a Thumbor config; ``security_key`` (Thumbor's ``--keyfile``), when given, signs
        instead of ``SECURITY_KEY``. Raises :class:`SettingError`."""
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = item.metadata.get("name")
            if name is not None:
                values[item.name] = item.metadata["parse"](name, _read(config, name, item.default))
        if security_key:
            values["security_key"] = _text_or_none("--keyfile", security_key)
        try:
            values["presets"] = types.MappingProxyType(dict(_presets.load(values["presets_file"])))
        except _presets.PresetError as error:
            raise SettingError(str(error)) from None
        return cls(**values)

    @classmethod
    def of(cls, config: Any, *, security_key: str | bytes | None = None) -> Settings:
        """:meth:`from_config`, built once per config object (and key) and then reused."""
        key = security_key.decode() if isinstance(security_key, bytes) else security_key
        try:
            built = _BUILT.setdefault(config, {})
        except TypeError:  # an object without weak references (a test's namespace): not kept
            return cls.from_config(config, security_key=key)
        settings = built.get(key)
        if settings is None:
            settings = built[key] = cls.from_config(config, security_key=key)
        return settings

    # --- reading ----------------------------------------------------------------------------

    @property
    def readable_buckets(self) -> tuple[str, ...]:
        """The buckets the loader reads: ``allowed_buckets``, and the fixed ``bucket``."""
        if self.bucket and self.bucket not in self.allowed_buckets:
            return (*self.allowed_buckets, self.bucket)
        return self.allowed_buckets

    @property
    def signing_keys(self) -> tuple[str, ...]:
        """The key that signs, then the further keys that verify (rotation)."""
        return (self.security_key or "", *self.verify_keys)

    def signer(self) -> Signer:
        """Signs with ``security_key``, verifies with every key. SettingError without a key."""
        if not self.security_key:
            raise SettingError("SECURITY_KEY is not set")
        return _signer(self.signing_keys, self.signature_algorithm)

    def validate(self) -> None:
        """Refuse (:class:`SettingError`) what a server must not start with; warn about what it
        may run with but should not."""
        primary, *extra = self.signing_keys
        if primary in DEFAULT_KEYS:
            raise SettingError("SECURITY_KEY is not set: refusing to start without a security key "
                               "(set SECURITY_KEY to a long random secret)")
        if DEFAULT_KEYS.intersection(extra):
            raise SettingError("IMGSTACK_VERIFY_KEYS holds Thumbor's published default key: anyone could sign links")
        for name, key in [("SECURITY_KEY", primary)] + [("IMGSTACK_VERIFY_KEYS", key) for key in extra]:
            if len(key) < MIN_KEY_LENGTH:
                raise SettingError(
                    f"{name} holds a key of {len(key)} characters: keys this short can be guessed offline "
                    f"from one signed URL; use at least {MIN_KEY_LENGTH} (openssl rand -hex 32)"
                )
        if self.only_presets and not self.presets:
            raise SettingError("IMGSTACK_ONLY_PRESETS is on but the presets file defines no preset")
        if self.allow_unsafe_url and not self.result_storage_stores_unsafe:
            logger.warning("ALLOW_UNSAFE_URL is on: anyone can make this server render anything")


def settings_of(context: Any) -> Settings:
    """The settings of a Thumbor context (its config, and its server's ``--keyfile`` key)."""
    server = getattr(context, "server", None)
    return Settings.of(context.config, security_key=getattr(server, "security_key", None))


#: config object -> key -> its settings (dropped with the config)
_BUILT: weakref.WeakKeyDictionary[Any, dict[str | None, Settings]] = weakref.WeakKeyDictionary()


def _given(config: Any, name: str) -> bool:
    """Whether ``name`` was given to the config (file, keywords, or the environment with
    Thumbor's ``--use-environment``), as opposed to left at its default."""
    if name in vars(config):
        return True
    return bool(getattr(type(config), "_allow_environment_variables", False)) and name in os.environ


def _read(config: Any, name: str, default: object) -> object:
    seed = _SEED_OF.get(name)
    if seed is not None and not _given(config, name) and _given(config, seed):
        seed_value = getattr(config, seed)
        if seed_value is not None:
            return seed_value
    return getattr(config, name, default)


@lru_cache(maxsize=8)
def _signer(keys: Sequence[str], algorithm: str) -> Signer:
    try:
        return Signer(list(keys), algorithm)
    except ValueError as error:
        raise SettingError(str(error)) from None
