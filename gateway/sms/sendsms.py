"""Kannel's smsbox `sendsms` interface: one GET per message, answered 202 when Kannel queued it.

Korean text goes as UCS-2 (``coding=2``, the text given in UTF-8); Kannel splits a long one
into concatenated parts itself (the sendsms user's ``concatenation = true`` and
``max-messages``). ``dlr-mask=31`` asks for every delivery report, which Kannel fetches from
the dlr-url with %d replaced by the report's code.

The request's URL carries the number and the password: it is never logged here, and httpx's
own request log is kept quiet (`gateway.logs`).

Exceptions::

    SendsmsError            the message did not reach Kannel's queue
    ├── KannelUnavailable   Kannel is down, busy or broken (connection refused, timeout, 5xx):
    │                       try again later
    └── KannelRejected      Kannel refused this message (4xx): trying again will not help
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import httpx

TIMEOUT_S: Final = 10.0


class SendsmsError(Exception):
    reason: str = "kannel_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KannelUnavailable(SendsmsError):
    pass


class KannelRejected(SendsmsError):
    pass


@dataclass(frozen=True)
class Outgoing:
    to: str  # national digits, e.g. 01012345678
    text: str
    dlr_url: str


class Sender(Protocol):
    async def send(self, message: Outgoing) -> None: ...


class KannelSender:
    """Sends through one smsbox with one sendsms user."""

    def __init__(
        self,
        url: str,
        *,
        username: str,
        password: str,
        sender: str,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._auth = {"username": username, "password": password}
        self._from = sender
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT_S)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, message: Outgoing) -> None:
        params = {
            **self._auth,
            "to": message.to,
            "text": message.text,
            "coding": "2",
            "charset": "UTF-8",
            "dlr-mask": "31",
            "dlr-url": message.dlr_url,
        }
        if self._from:
            params["from"] = self._from
        try:
            response = await self._client.get(self._url, params=params)
        except httpx.TimeoutException:
            raise KannelUnavailable("kannel_timeout") from None
        except httpx.TransportError:
            raise KannelUnavailable("kannel_unreachable") from None
        if response.status_code in (200, 202):
            return
        if response.status_code >= 500:
            raise KannelUnavailable(f"kannel_http_{response.status_code}")
        # Kannel's answer names the problem ("Authorization failed for sendsms", "Number(s)
        # has/have been denied..."), never the number itself.
        answer = response.text.strip().splitlines()[0][:120] if response.text.strip() else ""
        raise KannelRejected(f"kannel_http_{response.status_code}: {answer}".rstrip(": "))
