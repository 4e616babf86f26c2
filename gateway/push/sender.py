"""Sending one push message (RFC 8030) with pywebpush: the payload encrypted for the browser
(RFC 8291, aes128gcm), signed with the gateway's VAPID key (RFC 8292), with TTL and Urgency.

The endpoint is a capability URL: it appears in no exception and no log line here, and the
push service's answer is reduced to its status and Retry-After (its body may echo the URL).

Exceptions::

    PushError             the push service did not take the message
    ├── PushGone          404 or 410, or a host on a private network: drop the subscription
    ├── PushUnavailable   429, 5xx, no answer: try again later (after ``retry_after_s`` if given)
    └── PushRejected      any other 4xx (a bad request, a refused VAPID token, too large):
                          trying again will not help
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver
from py_vapid import VapidException
from pywebpush import WebPushException, webpush_async

from gateway.push.keys import VapidKey
from gateway.push.resolver import PrivateHost, PublicOnlyResolver

TIMEOUT_S: Final = 10.0


class PushError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PushGone(PushError):
    pass


class PushRejected(PushError):
    pass


class PushUnavailable(PushError):
    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Outgoing:
    endpoint: str
    p256dh: str
    auth: str
    payload: str
    ttl_s: int
    urgency: str
    topic: str  # at most 32 characters of base64url's alphabet


class Sender(Protocol):
    async def send(self, message: Outgoing) -> None: ...


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """RFC 9110's Retry-After: seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebPushSender:
    """Sends through one shared HTTP connection pool, signed as ``subject`` (mailto: or https:).
    Names resolve to public addresses only (``PublicOnlyResolver``): a subscription whose host
    turns out to be on a private network is dropped, never posted to."""

    def __init__(
        self, key: VapidKey, subject: str, *, resolver: AbstractResolver | None = None
    ) -> None:
        self._key = key
        self._subject = subject
        self._resolver = resolver
        self._client: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def send(self, message: Outgoing) -> None:
        if self._client is None:
            resolver = PublicOnlyResolver(self._resolver)
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
        try:
            await webpush_async(
                {
                    "endpoint": message.endpoint,
                    "keys": {"p256dh": message.p256dh, "auth": message.auth},
                },
                data=message.payload,
                vapid_private_key=self._key.vapid,
                # pywebpush adds the audience (the endpoint's origin) and a 12-hour expiry.
                vapid_claims={"sub": self._subject},
                ttl=message.ttl_s,
                # A copy sent again (a worker that died before recording the answer) replaces
                # the first while the push service still holds it (RFC 8030's Topic).
                headers={"Urgency": message.urgency, "Topic": message.topic},
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                aiohttp_session=self._client,
            )
        except WebPushException as exc:
            raise _classified(exc) from None
        except VapidException:
            raise PushRejected("push_vapid_invalid") from None
        except TimeoutError:
            raise PushUnavailable("push_timeout") from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, PrivateHost):
                raise PushGone("push_host_private") from None
            raise PushUnavailable("push_unreachable") from None
        except aiohttp.ClientError:
            raise PushUnavailable("push_unreachable") from None
        except asyncio.CancelledError:
            raise


def _classified(exc: WebPushException) -> PushError:
    response = exc.response
    status = getattr(response, "status", None)
    if not isinstance(status, int):
        return PushRejected("push_invalid_subscription")
    reason = f"push_http_{status}"
    if status in (404, 410):
        return PushGone(reason)
    if status == 429 or status >= 500:
        headers = getattr(response, "headers", None) or {}
        return PushUnavailable(
            reason, retry_after_seconds(headers.get("Retry-After"), datetime.now(UTC))
        )
    return PushRejected(reason)
