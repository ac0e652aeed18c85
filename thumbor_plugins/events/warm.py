"""What warming an original renders: the ONE list of (url, accept) used by the events endpoint and
by ``imgstack warm``.

Pure (no Thumbor, no S3). Each preset is requested once per ``Accept`` class a browser can send
(AVIF-capable, WebP-capable, neither); classes that negotiate to the same output format (AUTO_AVIF
off, or a preset with an explicit ``format()``) are requested once. Each :class:`WarmRequest`
carries the result-storage key the server will store it under, computed exactly as the server does
(:func:`thumbor_plugins.derived.derived_key` on the canonical path of the signed URL), so the warm
writes precisely the keys later browser requests look up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..derived import derived_key, negotiate
from ..sources import Source
from ..urls import Params, build_url, generate, parse, split_signed

#: seconds a warm link is valid: warm links expire, so that warming also works in private mode
#: (IMGSTACK_REQUIRE_EXPIRES) and a leaked warm URL is no permanent link. Expiry is not part of
#: the result-storage key: the warm stores exactly what later links of any expiry look up.
WARM_LINK_SECONDS = 300


def warm_link_lifetime(max_lifetime: int | None = None) -> int:
    """:data:`WARM_LINK_SECONDS`, or less than the server's maximum link lifetime when that is
    shorter (a tenth of it, at most 30 s, is left for clock skew between the signer and the
    server). ``None`` or 0: the server has no maximum."""
    if max_lifetime and max_lifetime > 0:
        return max(1, min(WARM_LINK_SECONDS, int(max_lifetime) - min(30, int(max_lifetime) // 10)))
    return WARM_LINK_SECONDS


#: one ``Accept`` header per class of browser, best first
ACCEPT_CLASSES = (
    "image/avif,image/webp,*/*",
    "image/webp,*/*",
    "image/jpeg,*/*",
)


@dataclass(frozen=True)
class WarmRequest:
    """One render: GET ``url`` with ``Accept: accept``; stored as ``derived_key`` in ``format``."""

    preset: str
    accept: str
    format: str
    url: str
    derived_key: str


def warm_requests(
    image: str,
    source: Source,
    presets: Mapping[str, Params],
    *,
    key: str | bytes,
    base: str = "",
    algorithm: str = "sha1",
    auto_avif: bool = True,
    auto_webp: bool = True,
    names: Iterable[str] | None = None,
    expires_in: int | None = None,
    now: float | None = None,
) -> list[WarmRequest]:
    """Every preset (or only ``names``, in the presets' order) × every distinct negotiated format,
    as signed URLs for ``image`` (decoded, as for :func:`~thumbor_plugins.urls.build_url`) valid
    ``expires_in`` seconds from ``now`` (permanent when None).
    ``source`` is the S3 object the server locates for ``image``. KeyError for an unknown name."""
    wanted = None if names is None else list(names)
    for name in wanted or ():
        if name not in presets:
            raise KeyError(name)
    prefix = base.rstrip("/")
    requests: list[WarmRequest] = []
    seen: set[str] = set()
    for name, preset in presets.items():
        if wanted is not None and name not in wanted:
            continue
        url = build_url(image, key=key, base=base, params=preset, algorithm=algorithm,
                        expires_in=expires_in, now=now)
        # the server's view of this URL: the path after the signature, without expires()
        _, rest = split_signed(url[len(prefix):])
        params = parse(rest)
        canonical = generate(params.without_expires())
        for accept in ACCEPT_CLASSES:
            fmt = negotiate(params.format, accept, auto_avif=auto_avif, auto_webp=auto_webp)
            stored_as = derived_key(source, canonical, fmt)
            if stored_as in seen:
                continue
            seen.add(stored_as)
            requests.append(WarmRequest(preset=name, accept=accept, format=fmt, url=url, derived_key=stored_as))
    return requests
