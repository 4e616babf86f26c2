"""Which address a request came from: the socket's peer, or the client a trusted proxy names.

Anyone can send ``X-Forwarded-For``; only a proxy the operator listed in
``GATEWAY_TRUSTED_PROXIES`` is believed. Behind trusted proxies the client is the right-most
address of the chain that is not itself a trusted proxy: every proxy appends the address it was
reached from, so the entries left of that one are the client's own words. With no proxy
configured (the default) the peer is the client, whatever the headers say.

``X-Forwarded-For`` is read when present, ``Forwarded`` (RFC 7239) otherwise: a proxy that
appends to one passes the other through from the client unchanged, and nginx's usual
configuration appends to ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeAlias

from starlette.requests import HTTPConnection

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 172.16.0.0/12"`` → networks; an entry that is neither an IP address nor a
    network raises ValueError, so a typing mistake stops the start instead of trusting no one."""
    networks: list[Network] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address as a proxy writes it: bare, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(header: str) -> list[str]:
    """The ``for=`` values of a ``Forwarded`` header, left to right."""
    hops: list[str] = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value.strip())
    return hops


def _chain(connection: HTTPConnection) -> list[str]:
    headers = connection.headers
    listed = headers.getlist("x-forwarded-for")
    if listed:
        return [hop for value in listed for hop in value.split(",")]
    return [hop for value in headers.getlist("forwarded") for hop in _forwarded_for(value)]


def _trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(connection: HTTPConnection, proxies: Sequence[Network]) -> str | None:
    """The client's address, as far as the trusted proxies vouch for it. A hop that is not an
    address (``unknown``, an obfuscated ``_name``) ends the walk at the last address known."""
    peer = connection.client.host if connection.client else None
    known = _address(peer) if peer else None
    if not _trusted(known, proxies):
        return peer
    chain = _chain(connection)
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            break
        known = address
        if not _trusted(address, proxies):
            break
    # Every hop a trusted proxy (or none listed): the left-most one reached is the client.
    return str(known)
