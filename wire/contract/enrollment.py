"""Enrollment codes: the one-time code an installer types on a new speaker, and the proof that
the receipt key it sends along is the speaker's own.

A code is 16 characters of Crockford's base32 (80 random bits), shown in groups of four
(``7K2M-QX9D-4HRT-B1VE``). Case, spaces and dashes do not matter; ``O`` reads as ``0`` and
``I``/``L`` as ``1``, as Crockford's alphabet has it.

Redeeming a code may enroll the speaker's receipt key at the same time. The speaker does not yet
know its city or id, so the proof of possession signs the code instead: the UTF-8 lines
"maeul-enrollment-key/v1", the normalised code and the base64 public key (as sent), joined by
"\\n", no trailing newline. Whoever sees the request cannot reuse the proof: the code is spent.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Final

from wire.contract.receipts import receipt_public_key
from wire.contract.signing import _verified

ENROLLMENT_KEY_DOMAIN: Final = "maeul-enrollment-key/v1"
ENROLLMENT_CODE_LENGTH: Final = 16
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READS_AS: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_enrollment_code() -> str:
    """A fresh code, normalised (no dashes)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(ENROLLMENT_CODE_LENGTH))


def normalize_enrollment_code(text: str) -> str | None:
    """The code as stored and signed, or None when `text` cannot be one."""
    code = "".join(text.split()).replace("-", "").upper().translate(_READS_AS)
    if len(code) != ENROLLMENT_CODE_LENGTH or any(c not in _ALPHABET for c in code):
        return None
    return code


def grouped_enrollment_code(code: str) -> str:
    """The code as people read it: groups of four joined by dashes."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def enrollment_key_proof_bytes(code: str, public_key: str) -> bytes:
    """The bytes the proof of possession signs (see the module's docstring)."""
    return "\n".join((ENROLLMENT_KEY_DOMAIN, code, public_key)).encode()


def enrollment_key_proof(private_key: bytes, code: str) -> dict[str, str]:
    """``receipt_public_key`` and ``receipt_key_proof`` (base64) for redeeming `code`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = base64.b64encode(receipt_public_key(private_key)).decode("ascii")
    signer = Ed25519PrivateKey.from_private_bytes(private_key)
    proof = signer.sign(enrollment_key_proof_bytes(code, public))
    return {"receipt_public_key": public, "receipt_key_proof": base64.b64encode(proof).decode()}


def verify_enrollment_key_proof(code: str, public_key: str, proof: str) -> bool:
    """True when `proof` is the holder of `public_key`'s signature for redeeming `code`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError):
        return False
    return _verified(key, proof, enrollment_key_proof_bytes(code, public_key))
