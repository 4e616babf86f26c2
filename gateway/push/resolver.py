"""Name resolution for push: only the internet's own addresses.

An endpoint's host is checked to be a public-looking name when the subscription is made
(``subscriptions.check_endpoint``), but a name is only as public as what it resolves to, and
that can change after the check (DNS rebinding). So the push sender's connections resolve
through ``PublicOnlyResolver``: of the addresses a name resolves to, those that are not global
(loopback, private, link-local, shared, reserved, multicast) are dropped at connect time, and a
name with none left is refused with ``PrivateHost``. A resident's browser can therefore never
aim the gateway at a machine of the city's own network.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class PrivateHost(OSError):
    """The endpoint's name resolves to no global address."""


def is_global(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [one for one in found if is_global(one["host"])]
        if not kept:
            raise PrivateHost("the push endpoint's name resolves to no public address")
        return kept

    async def close(self) -> None:
        await self._inner.close()
