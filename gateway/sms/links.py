"""The delivery-report links handed to Kannel: each names one message and carries an HMAC of
its id, so the unauthenticated callback cannot be used to forge a report for any other."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from gateway import keyfiles
from gateway.settings import Settings

KEY_NAME: Final = "sms_dlr_key"
PATH: Final = "/api/v1/sms/dlr"


class ReportLinks:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self._base = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportLinks:
        base = settings.sms_dlr_base_url or settings.public_url
        return cls(keyfiles.load_secret(settings, KEY_NAME), base)

    def signature(self, message_id: str) -> str:
        return hmac.new(self._key, f"sms-dlr:{message_id}".encode(), hashlib.sha256).hexdigest()

    def verify(self, message_id: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(message_id), signature)

    def url_for(self, message_id: str) -> str:
        # %d: Kannel puts the report's code there when it calls back.
        return f"{self._base}{PATH}?id={message_id}&sig={self.signature(message_id)}&status=%d"
