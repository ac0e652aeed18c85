"""Every setting of imgstack, defined once with Thumbor's ``Config.define``.

Settings are grouped (S3, Loader, Result storage, Private links, Delivery, Events, Operations) and
each has its description here; ``imgstack`` and ``config/thumbor.conf`` read them from here.

Any setting, Thumbor's or ours, can be set by an environment variable of the same name.
:func:`from_environment` converts the text to the type of the setting's default (bool, int, float,
list/tuple as comma-separated text, dict as JSON); ``config/thumbor.conf`` applies it last so that
the environment wins over the file.

The tc_aws plugin's names (``TC_AWS_ENDPOINT``, ``TC_AWS_REGION``, ``TC_AWS_LOADER_BUCKET``,
``TC_AWS_LOADER_ROOT_PATH``, ``TC_AWS_ALLOWED_BUCKETS``) are read too, so a tc_aws user only changes
``LOADER``; our own name wins when both are set (:mod:`thumbor_plugins.settings`, which reads
every setting typed, once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from thumbor.config import Config

from .settings import SEED_ALIASES, SettingError, parse_flag, split_names

MIB = 1024 * 1024

# --- S3 ---------------------------------------------------------------------------------------
Config.define(
    "IMGSTACK_S3_ENDPOINT_URL", None,
    "S3/MinIO endpoint, e.g. http://minio:9000 (None: AWS). Seed name: TC_AWS_ENDPOINT.", "S3")
Config.define("IMGSTACK_S3_REGION", None, "S3 region (None: us-east-1). Seed name: TC_AWS_REGION.", "S3")
Config.define(
    "IMGSTACK_S3_ACCESS_KEY", None,
    "Access key; None: the standard AWS chain (AWS_ACCESS_KEY_ID, profiles, ...).", "S3")
Config.define("IMGSTACK_S3_SECRET_KEY", None, "Secret key; None: the standard AWS chain.", "S3")
Config.define("IMGSTACK_S3_CONNECT_TIMEOUT", 2.0, "Seconds to open a connection to S3.", "S3")
Config.define("IMGSTACK_S3_READ_TIMEOUT", 10.0, "Seconds to wait for S3 to send data.", "S3")
Config.define(
    "IMGSTACK_S3_MAX_ATTEMPTS", 2,
    "Attempts per S3 call, first included (bounded retries of transient errors).", "S3")
Config.define("IMGSTACK_S3_MAX_POOL_CONNECTIONS", 32, "Size of the one S3 connection pool.", "S3")

# --- Loader -----------------------------------------------------------------------------------
Config.define(
    "IMGSTACK_BUCKET", None,
    "Fixed originals bucket: the whole image path is the key. None: the first path segment "
    "names the bucket. Seed name: TC_AWS_LOADER_BUCKET.", "Loader")
Config.define(
    "IMGSTACK_LOADER_ROOT_PATH", "",
    "Key prefix prepended to every key the loader reads. Seed name: TC_AWS_LOADER_ROOT_PATH.", "Loader")
Config.define(
    "IMGSTACK_ALLOWED_BUCKETS", ("images",),
    "Buckets the loader may read (anything else is 404). Seed name: TC_AWS_ALLOWED_BUCKETS.", "Loader")
Config.define(
    "IMGSTACK_MAX_SOURCE_BYTES", 512 * MIB,
    "Byte cap for an original: larger objects are refused with 413 without reading past the cap.",
    "Loader")
Config.define(
    "IMGSTACK_MAX_FILTERS", 10,
    "Filters one URL may ask for (400 above; expires() and v() not counted). Costly filters' "
    "arguments are bounded too (thumbor_plugins/urls/costs.py).", "Loader")
Config.define(
    "IMGSTACK_RENDER_TIMEOUT", 30.0,
    "Seconds a render may take before its request is answered 503 (Retry-After); the render goes "
    "on in its thread and stores its result. 0: no limit.", "Loader")
Config.define(
    "IMGSTACK_FALLBACK_IMAGE", None,
    "'bucket/key' of an image served (with MAX_AGE_TEMP_IMAGE) when the original is missing. "
    "None: missing originals are 404.", "Loader")

# --- Result storage ---------------------------------------------------------------------------
Config.define(
    "IMGSTACK_DERIVED_BUCKET", "images-derived",
    "Bucket of rendered results (private, written only by Thumbor).", "Result storage")
Config.define(
    "IMGSTACK_REVALIDATE_ORIGINALS", False,
    "Before serving a stored result, check with one HEAD that its original still exists with the "
    "ETag it was rendered from (kept in the result's metadata); a deleted or overwritten original "
    "is then never served stale. For S3 servers that send no events; costs one S3 HEAD per hit.",
    "Result storage")
Config.define(
    "IMGSTACK_HOT_RESULTS_BYTES", 32 * MIB,
    "Memory per worker process for results it read from the result storage lately, served again without "
    "asking S3 (see IMGSTACK_HOT_RESULTS_SECONDS). Results over an eighth of this are not kept. "
    "0: off (every hit reads S3).", "Result storage")
Config.define(
    "IMGSTACK_HOT_RESULTS_SECONDS", 10.0,
    "How long a result stays in IMGSTACK_HOT_RESULTS_BYTES. A purge on any worker of the same "
    "server drops the purged original's results in every worker at once; a purge received by "
    "another replica, or run with `imgstack purge`, reaches this memory within this many "
    "seconds. 0: off.", "Result storage")

# --- Private links ----------------------------------------------------------------------------
Config.define(
    "IMGSTACK_SIGNATURE_ALGORITHM", "sha1",
    "URL signature: 'sha1' (Thumbor's, every client library) or 'sha256' (HMAC-SHA256).",
    "Private links")
Config.define(
    "IMGSTACK_VERIFY_KEYS", (),
    "Further keys still accepted when verifying (rotation). SECURITY_KEY signs.", "Private links")
Config.define(
    "IMGSTACK_REQUIRE_EXPIRES", False,
    "Private mode: every link must carry expires(<unix s>) (403 otherwise).", "Private links")
Config.define(
    "IMGSTACK_MAX_LINK_LIFETIME", 0,
    "Refuse (403) links that expire more than this many seconds from now. 0: no limit.",
    "Private links")

# --- Delivery ---------------------------------------------------------------------------------
Config.define(
    "IMGSTACK_MAX_PIXELS", 500_000_000,
    "Largest original served: refuse (422), before decoding, originals whose header declares more "
    "pixels (width x height x frames). What protects memory is IMGSTACK_MAX_DECODE_MEMORY.",
    "Delivery")
Config.define(
    "IMGSTACK_MAX_DECODE_MEMORY", 320 * MIB,
    "Bytes one decode may hold, estimated from the header before decoding: 422 above. Baseline "
    "JPEG and non-interlaced PNG stream through the libvips engine and hold only the image "
    "downscaled to MAX_WIDTH x MAX_HEIGHT plus a few rows; everything else (progressive JPEG, "
    "interlaced PNG, WebP, GIF frames x canvas, TIFF, ...) holds every decoded pixel.", "Delivery")
Config.define(
    "IMGSTACK_MAX_DECOMPRESSION_RATIO", 250,
    "Refuse (422) an original too large to decode in memory (it is streamed) whose declared "
    "pixel bytes exceed its file size this many times: decompression bombs and truncated files. "
    "0: no check.", "Delivery")
Config.define(
    "IMGSTACK_SPOOL_BYTES", 16 * MIB,
    "Originals larger than this are written to a temporary file as they download and decoded "
    "from it, not held in memory.", "Loader")
Config.define(
    "IMGSTACK_ORIGINALS_CACHE_BYTES", 64 * MIB,
    "Memory per worker process for originals it read lately. A later render of one asks S3 "
    "whether it changed (If-None-Match: one request, no transfer) and reads it from memory when it "
    "did not, so it is never stale. Originals over a quarter of this, or spooled, are not kept. "
    "0: off.", "Loader")
Config.define(
    "IMGSTACK_SPOOL_DIR", None,
    "Folder for spooled originals (None: the system's temporary folder).", "Loader")
Config.define(
    "IMGSTACK_MEZZANINE_MIN_PIXELS", 40_000_000,
    "Originals with more pixels get a stored intermediate: one high-quality downscale to the size "
    "cap (MAX_WIDTH x MAX_HEIGHT) kept next to their results, which later misses render from. "
    "0: never.", "Delivery")
Config.define(
    "IMGSTACK_MEZZANINE_QUALITY", 95,
    "JPEG/WebP quality of the stored intermediate (PNG stays lossless).", "Delivery")
Config.define(
    "IMGSTACK_MAX_FRAMES", 1000,
    "Refuse (422) animated GIFs with more frames (each costs memory and time to load). 0: no cap.",
    "Delivery")
Config.define(
    "IMGSTACK_JPEG_SHRINK_ON_LOAD", True,
    "Decode JPEG originals at 1/2, 1/4 or 1/8 scale when the output is that much smaller (libjpeg "
    "DCT scaling), WebP originals at any scale with the libvips engine. Needs ENGINE = "
    "'thumbor_plugins.vips_engine' (default) or 'thumbor_plugins.engine'. See docs/decisions.md.",
    "Delivery")
Config.define(
    "IMGSTACK_JPEG_SKIP_SCANS", True,
    "A progressive JPEG that shrink-on-load decodes at 1/8 is handed to libjpeg without the scans "
    "that scale does not read (the AC scans of the components it decodes from DC alone): the same "
    "pixels, bit for bit, from a fraction of the entropy decoding. Libvips engine only. See "
    "docs/decisions.md.",
    "Delivery")
Config.define(
    "IMGSTACK_AVIF_EFFORT", 2,
    "libvips AVIF encoder effort, 0 (fastest) to 9 (smallest files), when Thumbor's AVIF_SPEED "
    "is unset (AVIF_SPEED s means effort 9 - s). See docs/decisions.md.",
    "Delivery")
Config.define(
    "IMGSTACK_RENDER_NICENESS", 10,
    "Niceness (0-19) of the render threads: the event loop (health checks, hits, events) then "
    "gets a core at once while renders run. 0: renders compete with it as equals.", "Delivery")
Config.define(
    "IMGSTACK_VIPS_CONCURRENCY", 2,
    "Threads libvips gives one render (its own concurrency). Renders already run side by side in "
    "every worker and every process; each thread of a streamed decode holds rows of the original, "
    "so more threads mean more memory per render, not more throughput.", "Delivery")
Config.define(
    "IMGSTACK_PROCESSES", 0,
    "Thumbor worker processes that thumbor_plugins.serve (imgstack dev, the Docker image) starts "
    "on one port. 0: one per CPU core (at most the container's CPU quota). Each renders in "
    "ENGINE_THREADPOOL_SIZE threads.",
    "Delivery")
Config.define(
    "IMGSTACK_PRESETS_FILE", None,
    "JSON file of named transformations (None: the presets shipped in config/presets.json).",
    "Delivery")
Config.define(
    "IMGSTACK_ONLY_PRESETS", False,
    "Refuse (403) any transformation that is not a preset.", "Delivery")
Config.define(
    "IMGSTACK_VERSIONED_MAX_AGE", 31536000,
    "max-age of permanent versioned URLs (served immutable).", "Delivery")

Config.define(
    "IMGSTACK_MAX_CONCURRENT_REQUESTS", 64,
    "Image requests one process works on at once (after verification); more are refused with "
    "503 + Retry-After instead of queueing without bound; a result held in the process's memory "
    "(hot results) is served without taking a slot. 0: no limit.", "Delivery")

# --- Events -----------------------------------------------------------------------------------
Config.define(
    "IMGSTACK_EVENTS_TOKEN", None,
    "Bearer token MinIO sends to POST /events/minio. None: the endpoint is off.", "Events")
Config.define(
    "IMGSTACK_EVENTS_MAX_BODY_BYTES", 4 * 1024 * 1024,
    "Largest event body accepted (413 above); read only after the token matched.", "Events")
Config.define("IMGSTACK_EVENTS_QUEUE_SIZE", 256, "Pending events before 503 (MinIO retries).", "Events")
Config.define("IMGSTACK_EVENTS_WORKERS", 2, "Concurrent warm/purge jobs.", "Events")

# --- Operations -------------------------------------------------------------------------------
Config.define(
    "IMGSTACK_METRICS_TOKEN", None,
    "Bearer token required by /metrics. None: /metrics is open.", "Operations")
Config.define("IMGSTACK_ACCESS_LOG", True, "One JSON line per request on the imgstack.access logger.",
              "Operations")
Config.define(
    "IMGSTACK_TRUSTED_PROXIES", (),
    "Addresses or networks of the proxies in front (e.g. 172.16.0.0/12): only their "
    "X-Forwarded-For/X-Real-Ip name the client (logs); anyone else's is ignored.", "Operations")
Config.define(
    "IMGSTACK_ACCESS_LOG_FILE", None,
    "File the JSON access lines are appended to (imgstack dev: <data dir>/access.log). None: stderr.",
    "Operations")


def _convert(name: str, text: str) -> Any:
    default = Config.class_defaults.get(name)
    try:
        if isinstance(default, bool):
            return parse_flag(name, text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (list, tuple)):
            return type(default)(split_names(text))
        if isinstance(default, dict):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except SettingError:
        raise
    except ValueError as error:
        raise SettingError(f"{name}={text!r}: {error}") from None
    return text


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings (Thumbor's and ours, plus the tc_aws seed names) found in the environment,
    converted to the type of each setting's default."""
    environ = os.environ if environ is None else environ
    known = set(Config.class_defaults) | set(SEED_ALIASES)
    values = {}
    for name in sorted(known & set(environ)):
        target = SEED_ALIASES.get(name, name)
        values[name] = _convert(target, environ[name])
    return values
