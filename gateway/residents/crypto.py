"""Residents' phone numbers: their one spelling, their mask, and how they are kept encrypted.

A number is stored as AES-256-GCM ciphertext under a key derived from the secret ``phone_key``
(``GATEWAY_PHONE_KEY`` or ``_FILE``, see `gateway.keyfiles`: outside the database), with the
row's own id as associated data, so a ciphertext copied onto another row does not open. Beside
it: the id of the key that sealed it (rotation), the last four digits (the mask) and a keyed
hash (HMAC-SHA256) of the number, so a duplicate is found without decrypting any row.

Rotation: set the new secret as ``GATEWAY_PHONE_KEY`` and the old one as
``GATEWAY_PHONE_KEY_PREVIOUS``; numbers sealed with the old key still open, lookups hash under
both, and the retention job seals every old row again under the new key.

Exceptions::

    errors.InvalidRequest
    └── InvalidPhoneNumber     (422 invalid_phone_number) not a Korean mobile number
    errors.Unavailable
    └── PhoneKeyUnavailable    (503 phone_key_unavailable) sealed with a key no longer configured
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import keyfiles
from gateway.errors import InvalidRequest, Unavailable

if TYPE_CHECKING:
    from gateway.settings import Settings

KEY_NAME: Final = "phone_key"
PREVIOUS_KEY_NAME: Final = "phone_key_previous"
_NONCE_BYTES: Final = 12
# Separators people type between groups: spaces, hyphens, dots, brackets.
_SEPARATORS: Final = re.compile(r"[\s\-.()]")
# Mobile numbers since 2004 are 010 and eight digits (the 01X prefixes are retired).
_MOBILE: Final = re.compile(r"010\d{8}")


class InvalidPhoneNumber(InvalidRequest):
    code = "invalid_phone_number"

    def __init__(self) -> None:
        # Never the number itself: error messages reach logs and screens.
        super().__init__(
            ko="휴대전화 번호가 올바르지 않습니다 (010-0000-0000 형식).",
            en="Not a Korean mobile number (010-0000-0000, or +82 10 ...).",
        )


class PhoneKeyUnavailable(Unavailable):
    code = "phone_key_unavailable"

    def __init__(self, key_id: str) -> None:
        super().__init__(
            ko=f"전화번호 암호화 키({key_id})가 설정되어 있지 않습니다.",
            en=f"The phone number key {key_id} is not configured (GATEWAY_PHONE_KEY_PREVIOUS?).",
        )


def normalise_phone(raw: str) -> str:
    """``01012345678`` from any usual spelling (``010-1234-5678``, ``+82 10-1234-5678``,
    ``82 10 1234 5678``); raises InvalidPhoneNumber otherwise."""
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+82"):
        digits = "0" + digits[3:].removeprefix("0")
    elif digits.startswith("82") and len(digits) in (11, 12):
        digits = "0" + digits[2:].removeprefix("0")
    if not _MOBILE.fullmatch(digits):
        raise InvalidPhoneNumber()
    return digits


def format_phone(number: str) -> str:
    """``010-1234-5678`` from a normalised number."""
    return f"{number[:3]}-{number[3:7]}-{number[7:]}"


def mask_last4(last4: str) -> str:
    return f"010-****-{last4}"


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


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes  # nonce, then ciphertext and tag
    lookup: str  # keyed hash of the normalised number under the same key
    last4: str


class _Key:
    def __init__(self, secret: bytes) -> None:
        def derive(info: bytes) -> bytes:
            return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)

        self.aead = AESGCM(derive(b"maeul phone numbers: aead"))
        self.mac_key = derive(b"maeul phone numbers: lookup")
        self.key_id = hashlib.sha256(derive(b"maeul phone numbers: key id")).hexdigest()[:12]

    def lookup(self, number: str) -> str:
        return hmac.new(self.mac_key, number.encode(), hashlib.sha256).hexdigest()


class PhoneCipher:
    """Seals and opens phone numbers; hashes them for lookups. Holds the current key and any
    previous ones (rotation)."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self._current = _Key(current)
        self._keys = {self._current.key_id: self._current}
        for secret in previous:
            key = _Key(secret)
            self._keys.setdefault(key.key_id, key)

    @classmethod
    def from_settings(cls, settings: Settings) -> PhoneCipher:
        current = keyfiles.load_secret(settings, KEY_NAME)
        previous = []
        if settings.phone_key_previous is not None or settings.phone_key_previous_file is not None:
            previous.append(keyfiles.load_secret(settings, PREVIOUS_KEY_NAME))
        return cls(current, previous)

    @property
    def key_id(self) -> str:
        return self._current.key_id

    def seal(self, number: str, *, context: str) -> Sealed:
        """Encrypt a normalised number for the row named by ``context`` (e.g. ``resident:12``)."""
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._current.aead.encrypt(nonce, number.encode(), context.encode())
        return Sealed(
            key_id=self._current.key_id,
            ciphertext=nonce + ciphertext,
            lookup=self._current.lookup(number),
            last4=number[-4:],
        )

    def open(self, key_id: str, ciphertext: bytes, *, context: str) -> str:
        key = self._keys.get(key_id)
        if key is None:
            raise PhoneKeyUnavailable(key_id)
        nonce, body = ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:]
        try:
            return key.aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            # A row whose ciphertext was moved or altered: the same answer as a missing key,
            # with no detail that could help whoever moved it.
            raise PhoneKeyUnavailable(key_id) from None

    def lookups(self, number: str) -> list[str]:
        """The keyed hashes of a normalised number under every configured key (current first)."""
        return [key.lookup(number) for key in self._keys.values()]

    def hmac(self, *parts: str) -> str:
        """A keyed hash of anything else kept only to compare (verification codes, sources)."""
        return hmac.new(
            self._current.mac_key, "\x1f".join(parts).encode(), hashlib.sha256
        ).hexdigest()
