"""The client's address, trusting ``X-Forwarded-For``/``X-Real-Ip`` only from known proxies.

Thumbor runs tornado with ``xheaders=True``, which takes either header from anyone: any client
could write any address into the logs. :func:`client_ip` believes them only when the connection
comes from ``IMGSTACK_TRUSTED_PROXIES`` (addresses or networks, e.g. the compose cache's), and then
only up to the first address that is not a trusted proxy itself (the rightmost untrusted hop:
what a client prepends is never reached). Pure; the app applies it to every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(values: Iterable[str] | str | None) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 172.18.0.5"`` (or a list) -> networks. ValueError names a bad entry."""
    if isinstance(values, str):
        values = values.split(",")
    found = []
    for value in values or ():
        value = value.strip()
        if not value:
            continue
        try:
            found.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"IMGSTACK_TRUSTED_PROXIES: {value!r} is not an address or network") from None
    return tuple(found)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(peer: str, forwarded_for: str | None, real_ip: str | None, trusted: tuple[Network, ...]) -> str:
    """The address to log for a request that came from ``peer``."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _trusted(hop, trusted):
                return hop if _valid(hop) else peer
        return hops[0] if hops and _valid(hops[0]) else peer
    if real_ip and _valid(real_ip):
        return real_ip.strip()
    return peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return True
