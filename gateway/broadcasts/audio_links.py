"""Signed audio addresses: a recording fetched without a login, by whom and until when.

Speakers never log in to fetch audio: each command carries, for audio too large to travel
inline, ``/api/v1/audio/{sha256}?expires=...&sig=...``, an HMAC-SHA256 over the audio's sha256
and the command's expiry under ``GATEWAY_AUDIO_URL_KEY`` (``keyfiles.load_secret``; every
replica shares it, so any replica serves a link another signed). Residents' notices carry the
same kind of link for what their village's speakers played. Anything else needs a login and the
right to see a broadcast, approval request or schedule that uses the audio
(``broadcasts.service.may_hear``).

Exceptions::

    Forbidden  audio_link_required (no link and no login), audio_link_invalid (forged, or for
               other audio), audio_link_expired
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Final

from gateway.errors import Forbidden
from gateway.keyfiles import load_secret
from gateway.settings import Settings

_LABEL: Final = b"maeul-audio-link-v1"
PATH: Final = "/api/v1/audio/"


def link_required() -> Forbidden:
    return Forbidden(
        "audio_link_required",
        ko="이 음성은 서명된 주소로만, 또는 로그인한 뒤에만 받을 수 있습니다.",
        en="This audio is served only through a signed link, or after logging in.",
    )


def _invalid() -> Forbidden:
    return Forbidden(
        "audio_link_invalid",
        ko="음성 주소의 서명이 올바르지 않습니다.",
        en="The audio link's signature is not valid.",
    )


def _expired() -> Forbidden:
    return Forbidden(
        "audio_link_expired",
        ko="음성 주소의 유효 기간이 지났습니다.",
        en="The audio link has expired.",
    )


class AudioLinks:
    """Signs and checks audio links under one key (the replicas' shared secret)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> AudioLinks:
        return cls(load_secret(settings, "audio_url_key"))

    def _sig(self, sha256: str, expires: int) -> str:
        message = _LABEL + b"\n" + sha256.encode() + b"\n" + str(expires).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def path(self, sha256: str, expires_at: datetime) -> str:
        """The gateway-relative link to ``sha256`` good until ``expires_at``."""
        expires = int(expires_at.timestamp())
        return f"{PATH}{sha256}?expires={expires}&sig={self._sig(sha256, expires)}"

    def url(self, base: str, sha256: str, expires_at: datetime) -> str:
        return base.rstrip("/") + self.path(sha256, expires_at)

    def check(self, sha256: str, expires: int | None, sig: str, *, now: datetime) -> int:
        """Refuse a forged link, or one past its expiry; returns the seconds it has left."""
        if expires is None or not hmac.compare_digest(
            sig.encode(), self._sig(sha256, expires).encode()
        ):
            raise _invalid()
        left = expires - int(now.timestamp())
        if left <= 0:
            raise _expired()
        return left
