"""The gateway's VAPID key (RFC 8292): it signs every push request, and browsers subscribe with
its public half (the ``applicationServerKey``), so every replica must hold the same one.

It is a secret like the others (`gateway.keyfiles`): ``GATEWAY_PUSH_VAPID_PRIVATE_KEY`` or its
``_FILE``, required in production when push is on, made in the data directory elsewhere. Its
form is the one web-push tools print: the 32-byte P-256 private scalar, base64url without
padding (43 characters), which is also what ``maeul secret`` prints.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from gateway.keyfiles import SecretError, load_secret
from gateway.settings import Settings

KEY_NAME: Final = "push_vapid_private_key"
# The order of P-256's group: a private scalar lies in [1, n-1].
_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; raises ValueError."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


@dataclass(frozen=True)
class VapidKey:
    vapid: Vapid
    # The uncompressed public point, base64url: what pushManager.subscribe() is given.
    public_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidKey:
        text = load_secret(settings, KEY_NAME).decode("ascii", errors="replace")
        try:
            raw = b64url_decode(text)
        except ValueError:
            raw = b""
        scalar = int.from_bytes(raw, "big") if len(raw) == 32 else 0
        if not 0 < scalar < _ORDER:
            raise SecretError(
                "GATEWAY_PUSH_VAPID_PRIVATE_KEY must be a P-256 private key: 32 bytes in "
                "base64url (43 characters, as web-push tools and `maeul secret` print it)"
            )
        private = ec.derive_private_key(scalar, ec.SECP256R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return cls(Vapid(private), b64url(public))
