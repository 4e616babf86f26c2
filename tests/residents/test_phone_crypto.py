"""Phone numbers: one spelling, the mask, sealing bound to its row, hashes for lookups, rotation."""

from __future__ import annotations

import pytest

from gateway.residents.crypto import (
    InvalidPhoneNumber,
    PhoneCipher,
    PhoneKeyUnavailable,
    format_phone,
    mask_last4,
    normalise_phone,
)

OLD = b"old-phone-key-0123456789abcdefghijklmnop"
NEW = b"new-phone-key-0123456789abcdefghijklmnop"


@pytest.mark.parametrize(
    "typed",
    [
        "010-1234-5678",
        "01012345678",
        "+82 10-1234-5678",
        "+821012345678",
        "+82 010 1234 5678",
        "82-10-1234-5678",
        " 010.1234.5678 ",
        "(010) 1234-5678",
    ],
)
def test_korean_mobile_numbers_have_one_spelling(typed: str) -> None:
    assert normalise_phone(typed) == "01012345678"
    assert format_phone("01012345678") == "010-1234-5678"
    assert mask_last4("5678") == "010-****-5678"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "010-1234-567",
        "010-1234-56789",
        "011-123-4567",
        "02-123-4567",
        "+1 202 555 0100",
        "010-abcd-5678",
        "+82 2 123 4567",
        "0101234567a",
    ],
)
def test_anything_else_is_refused_without_echoing_it(typed: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as refused:
        normalise_phone(typed)
    assert refused.value.code == "invalid_phone_number"
    digits = "".join(c for c in typed if c.isdigit())
    if len(digits) >= 4:
        assert digits not in str(refused.value)


def test_a_sealed_number_opens_only_on_its_own_row() -> None:
    cipher = PhoneCipher(OLD)
    sealed = cipher.seal("01012345678", context="resident:7")
    assert b"01012345678" not in sealed.ciphertext
    assert sealed.last4 == "5678"
    assert cipher.open(sealed.key_id, sealed.ciphertext, context="resident:7") == "01012345678"
    with pytest.raises(PhoneKeyUnavailable):
        cipher.open(sealed.key_id, sealed.ciphertext, context="resident:8")
    # A fresh nonce each time, the same keyed hash: duplicates found without decrypting.
    again = cipher.seal("01012345678", context="resident:7")
    assert again.ciphertext != sealed.ciphertext
    assert again.lookup == sealed.lookup
    assert cipher.seal("01012345679", context="resident:7").lookup != sealed.lookup


def test_after_a_rotation_old_numbers_open_and_are_found() -> None:
    old = PhoneCipher(OLD)
    sealed = old.seal("01012345678", context="resident:1")
    rotated = PhoneCipher(NEW, [OLD])
    assert rotated.key_id != old.key_id
    assert rotated.open(sealed.key_id, sealed.ciphertext, context="resident:1") == "01012345678"
    assert sealed.lookup in rotated.lookups("01012345678")
    assert rotated.lookups("01012345678")[0] == rotated.seal("01012345678", context="x").lookup
    # Without the old key, the gateway says which key is missing, not what the number is.
    with pytest.raises(PhoneKeyUnavailable, match=sealed.key_id):
        PhoneCipher(NEW).open(sealed.key_id, sealed.ciphertext, context="resident:1")
