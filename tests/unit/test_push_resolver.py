"""A push endpoint's name must resolve to the internet: a name that points into the city's own
network (or is made to, after the subscription was checked) is never posted to, and the
subscription is dropped."""

from __future__ import annotations

import base64
import secrets
import socket
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.push.keys import VapidKey
from gateway.push.resolver import PrivateHost, PublicOnlyResolver, is_global
from gateway.push.sender import Outgoing, PushGone, WebPushSender
from gateway.settings import Settings


class Answers(AbstractResolver):
    """What a (rebound) DNS would answer for any name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


PRIVATE = (
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.0.1",
    "169.254.169.254",  # a cloud's metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1%2",
    "fd00::1",
    "::ffff:10.0.0.1",
)


@pytest.mark.parametrize("address", PRIVATE)
def test_no_private_address_counts_as_global(address: str) -> None:
    assert not is_global(address)


async def test_private_answers_are_dropped_and_a_name_with_none_left_is_refused() -> None:
    mixed = PublicOnlyResolver(Answers("10.0.0.7", "142.250.196.106"))
    kept = await mixed.resolve("fcm.googleapis.com", 443)
    assert [one["host"] for one in kept] == ["142.250.196.106"]
    with pytest.raises(PrivateHost):
        await PublicOnlyResolver(Answers(*PRIVATE)).resolve("push.example.com", 443)


async def test_a_subscription_whose_host_is_private_is_gone_without_a_request(
    tmp_path: Path,
) -> None:
    scalar = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    key = VapidKey.from_settings(
        Settings(
            environment="test",
            data_dir=tmp_path,
            push_vapid_private_key=base64.urlsafe_b64encode(scalar.to_bytes(32, "big"))
            .rstrip(b"=")
            .decode(),
        )
    )
    browser = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = base64.urlsafe_b64encode(
        browser.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    dns = Answers("169.254.169.254")
    sender = WebPushSender(key, "mailto:ops@example.kr", resolver=dns)
    try:
        with pytest.raises(PushGone) as gone:
            await sender.send(
                Outgoing(
                    endpoint="https://push.example.com/wpush/v2/abc",
                    p256dh=p256dh.rstrip(b"=").decode(),
                    auth=base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
                    payload='{"title": "마을 방송"}',
                    ttl_s=60,
                    urgency="high",
                    topic="t1",
                )
            )
    finally:
        await sender.aclose()
    assert gone.value.reason == "push_host_private"
    assert dns.asked == ["push.example.com"]
