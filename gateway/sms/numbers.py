"""Phone numbers as this slice keeps them: checked and normalised, sealed with AES-GCM under a
key outside the database (``phone_number_key``), opened only to hand one to Kannel, and masked
anywhere a person could read them."""

from __future__ import annotations

import os
import re
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import keyfiles
from gateway.errors import InvalidRequest
from gateway.settings import Settings

KEY_NAME: Final = "phone_number_key"
_VERSION: Final = b"p1"
_NONCE_BYTES: Final = 12
_AAD: Final = b"maeul phone number"
# Korean mobile numbers: 010 with eight digits, the older 011 and 016-019 with seven or eight.
_MOBILE: Final = re.compile(r"010\d{8}|01[16789]\d{7,8}")


# 010-0000-0000 .. 010-0999-9999: a middle group beginning with 0 is never assigned to a
# subscriber. Seeded demo residents get these (`gateway.seed_households`); the SMS worker sends
# nothing to them unless GATEWAY_SMS_ALLOW_SYNTHETIC is set, for a test SMSC.
SYNTHETIC_PREFIX: Final = "0100"
SYNTHETIC_CAPACITY: Final = 10_000_000


def synthetic_number(index: int) -> str:
    """The index-th synthetic number, normalised (01000000000, 01000000001, ...)."""
    if not 0 <= index < SYNTHETIC_CAPACITY:
        raise ValueError("there are ten million synthetic numbers")
    return f"{SYNTHETIC_PREFIX}{index:07d}"


def is_synthetic_number(number: str) -> bool:
    """Whether a normalised mobile number is in the seeded, never-assigned range."""
    return len(number) == 11 and number.startswith(SYNTHETIC_PREFIX)


class PhoneNumberError(InvalidRequest):
    code = "sms_phone_invalid"

    def __init__(self) -> None:
        super().__init__(
            ko="휴대전화 번호 형식이 아닙니다 (예: 010-1234-5678).",
            en="Not a Korean mobile number (e.g. 010-1234-5678).",
        )


def normalize_mobile(raw: str) -> str:
    """Digits only, in the national form (``01012345678``); "+82 10-..." is accepted."""
    digits = re.sub(r"[\s\-().]", "", raw)
    if digits.startswith("+82"):
        digits = "0" + digits[3:]
    elif digits.startswith("82") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    if not _MOBILE.fullmatch(digits):
        raise PhoneNumberError()
    return digits


def mask(number: str) -> str:
    """``010-****-5678``: the prefix and the last four digits only."""
    return f"{number[:3]}-****-{number[-4:]}"


class NumberSeal:
    """Seals and opens phone numbers with a key derived from ``phone_number_key``."""

    def __init__(self, secret: bytes) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"maeul phone numbers").derive(
            secret
        )
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> NumberSeal:
        return cls(keyfiles.load_secret(settings, KEY_NAME))

    def seal(self, number: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, number.encode(), _AAD)

    def open(self, sealed: bytes) -> str:
        if not sealed.startswith(_VERSION):
            raise keyfiles.SecretError("a stored phone number is not sealed")
        body = sealed[len(_VERSION) :]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], _AAD).decode()
        except InvalidTag:
            raise keyfiles.SecretError(
                "cannot open a stored phone number: GATEWAY_PHONE_NUMBER_KEY is not the key "
                "it was sealed with"
            ) from None
