"""Subscribing a browser to a village's notices, and unsubscribing it: what a subscription must
be to be kept, checked before anything is stored.

The endpoint is where the gateway will POST: an https URL of a push service, of a sane length,
with a host name (an IP literal or ``localhost`` never is a push service, and would let anyone
aim the gateway at a machine of its own network). Tests and demos may allow
``http://127.0.0.1`` (``push_allow_loopback_endpoints``), never production. The keys are the
browser's (RFC 8291): ``p256dh`` an uncompressed point on P-256 (65 bytes), ``auth`` 16 bytes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import dialect_insert
from gateway.errors import InvalidRequest
from gateway.places import service as places
from gateway.places.models import City
from gateway.push.keys import b64url_decode
from gateway.push.models import PushSubscription

MAX_ENDPOINT_LENGTH: Final = 1024


class EndpointInvalid(InvalidRequest):
    code = "push_endpoint_invalid"

    def __init__(self, why_ko: str, why_en: str) -> None:
        super().__init__(
            ko=f"알림 주소(endpoint)가 올바르지 않습니다: {why_ko}",
            en=f"The subscription's endpoint is not acceptable: {why_en}",
        )


class KeysInvalid(InvalidRequest):
    code = "push_keys_invalid"

    def __init__(self, which: str, why_en: str) -> None:
        super().__init__(
            ko=f"알림 구독의 암호 키({which})가 올바르지 않습니다.",
            en=f"The subscription's key {which} is not valid: {why_en}",
        )


def check_endpoint(endpoint: str, *, allow_loopback: bool) -> str:
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise EndpointInvalid(
            f"{MAX_ENDPOINT_LENGTH}자보다 깁니다", f"longer than {MAX_ENDPOINT_LENGTH} characters"
        )
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise EndpointInvalid("URL이 아닙니다", "not a URL") from None
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise EndpointInvalid(
            "사용자 정보나 #조각이 있습니다", "it carries user information or a fragment"
        )
    if allow_loopback and parts.scheme == "http" and host == "127.0.0.1" and port:
        return endpoint
    if parts.scheme != "https" or not host:
        raise EndpointInvalid("https 주소여야 합니다", "it must be an https URL")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise EndpointInvalid(
            "IP 주소가 아닌 호스트 이름이어야 합니다", "its host is an IP address"
        )
    if (
        host == "localhost"
        or host.endswith((".localhost", ".local", ".internal"))
        or "." not in host
    ):
        raise EndpointInvalid("공개된 호스트가 아닙니다", "its host is not a public name")
    return endpoint


def check_keys(p256dh: str, auth: str) -> None:
    try:
        point = b64url_decode(p256dh)
    except ValueError:
        raise KeysInvalid("p256dh", "not base64url") from None
    if len(point) != 65 or point[0] != 4:
        raise KeysInvalid("p256dh", "not a 65-byte uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise KeysInvalid("p256dh", "not a point on P-256") from None
    try:
        secret = b64url_decode(auth)
    except ValueError:
        raise KeysInvalid("auth", "not base64url") from None
    if len(secret) != 16:
        raise KeysInvalid("auth", "not 16 bytes")


def endpoint_digest(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()


async def subscribe(
    session: AsyncSession,
    city: City,
    *,
    village_id: int,
    language: str | None,
    endpoint: str,
    p256dh: str,
    auth: str,
    now: datetime,
    allow_loopback: bool,
) -> PushSubscription:
    """Keep the browser's subscription for the village. The same endpoint again (the browser
    moved to another village, or renewed its keys) replaces what was kept for it."""
    check_endpoint(endpoint, allow_loopback=allow_loopback)
    check_keys(p256dh, auth)
    village = await places.load_village(session, city.id, village_id)
    kept = {
        "village_id": village.id,
        "language": language,
        "p256dh": p256dh,
        "auth": auth,
        "updated_at": now,
    }
    # One statement, so two requests with the same new endpoint cannot both insert it.
    insert = dialect_insert(session)
    statement = insert(PushSubscription).values(
        id=secrets.token_hex(16),
        city_id=city.id,
        endpoint=endpoint,
        endpoint_sha256=endpoint_digest(endpoint),
        created_at=now,
        **kept,
    )
    subscription_id = await session.scalar(
        statement.on_conflict_do_update(index_elements=["endpoint_sha256"], set_=kept).returning(
            PushSubscription.id
        )
    )
    subscription = await session.get(PushSubscription, subscription_id, populate_existing=True)
    assert subscription is not None
    return subscription


async def unsubscribe(session: AsyncSession, city: City, *, endpoint: str) -> None:
    """Forget the subscription of this endpoint, if any: knowing the endpoint (a capability
    only its browser holds) is the proof of owning it."""
    await session.execute(
        delete(PushSubscription)
        .where(
            PushSubscription.city_id == city.id,
            PushSubscription.endpoint_sha256 == endpoint_digest(endpoint),
        )
        .execution_options(synchronize_session=False)
    )
