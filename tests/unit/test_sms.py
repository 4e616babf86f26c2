"""The SMS slice's pure parts: numbers (the residents' one spelling and key), parts, states,
report links, the fake SMSC's log, and what `enqueue_sms` refuses before anything is stored."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.residents.crypto import (
    InvalidPhoneNumber,
    PhoneCipher,
    PhoneKeyUnavailable,
    mask_last4,
    normalise_phone,
)
from gateway.sms import service
from gateway.sms.links import ReportLinks
from gateway.sms.segments import count_parts
from gateway.sms.states import (
    DLR_EVENTS,
    TRANSITIONS,
    InvalidTransition,
    SmsEvent,
    SmsStatus,
    next_status,
)
from maeul.kannel import parse_fakesmsc_line


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("010-1234-5678", "01012345678"),
        ("010 1234 5678", "01012345678"),
        ("+82 10-1234-5678", "01012345678"),
        ("821012345678", "01012345678"),
    ],
)
def test_mobile_numbers_in_any_spelling_are_normalised(raw: str, number: str) -> None:
    assert normalise_phone(raw) == number


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "011-234-5678",
        "02-123-4567",
        "010-1234-567",
        "010-1234-56789",
        "010-abcd-5678",
        "1588-0000",
    ],
)
def test_what_is_not_a_korean_mobile_number_is_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(raw)
    assert caught.value.code == "invalid_phone_number"
    assert caught.value.status == 422


def test_a_number_is_masked_and_sealed_never_stored_plain() -> None:
    cipher = PhoneCipher(secrets.token_bytes(32))
    sealed = service.seal_recipient(cipher, "m1", "01012345678")
    assert b"12345678" not in sealed
    assert service.seal_recipient(cipher, "m1", "01012345678") != sealed  # a new nonce each time
    assert service.open_recipient(cipher, "m1", sealed) == "01012345678"
    assert mask_last4("01012345678"[-4:]) == "010-****-5678"
    # Another message's row, another key, or a rotated key no longer configured: it does not open.
    with pytest.raises(PhoneKeyUnavailable):
        service.open_recipient(cipher, "m2", sealed)
    with pytest.raises(PhoneKeyUnavailable):
        service.open_recipient(PhoneCipher(secrets.token_bytes(32)), "m1", sealed)
    # Rotation: a number sealed under the previous key still opens.
    old = secrets.token_bytes(32)
    rotated = PhoneCipher(secrets.token_bytes(32), [old])
    assert (
        service.open_recipient(
            rotated, "m1", service.seal_recipient(PhoneCipher(old), "m1", "01012345678")
        )
        == "01012345678"
    )


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("가" * 70, 1),
        ("가" * 71, 2),
        ("가" * 134, 2),
        ("가" * 135, 3),
        ("a" * 70, 1),
        ("😀" * 35, 1),
    ],
)
def test_ucs2_parts(text: str, parts: int) -> None:
    assert count_parts(text) == parts


def test_reports_are_legal_in_any_order_and_final_states_stay_final() -> None:
    assert next_status(SmsStatus.SENDING, SmsEvent.REPORT_DELIVERED) is SmsStatus.DELIVERED
    assert next_status(SmsStatus.DELIVERED, SmsEvent.ACCEPTED) is SmsStatus.DELIVERED
    assert next_status(SmsStatus.DELIVERED, SmsEvent.REPORT_SMSC) is SmsStatus.DELIVERED
    assert next_status(SmsStatus.FAILED, SmsEvent.ACCEPTED) is SmsStatus.FAILED
    with pytest.raises(InvalidTransition):
        next_status(SmsStatus.FAILED, SmsEvent.REPORT_DELIVERED)
    with pytest.raises(InvalidTransition):
        next_status(SmsStatus.OVER_BUDGET, SmsEvent.CLAIMED)
    for status in (SmsStatus.DELIVERED, SmsStatus.FAILED, SmsStatus.OVER_BUDGET):
        assert set(TRANSITIONS[status].values()) == {status}
    assert DLR_EVENTS[1] is SmsEvent.REPORT_DELIVERED
    assert DLR_EVENTS[16] is SmsEvent.REPORT_FAILED


def test_a_report_link_names_one_message() -> None:
    links = ReportLinks(secrets.token_bytes(32), "https://maeul.example/")
    url = links.url_for("abc")
    assert url.startswith("https://maeul.example/api/v1/sms/dlr?id=abc&sig=")
    assert url.endswith("&status=%d")
    assert links.verify("abc", links.signature("abc"))
    assert not links.verify("abd", links.signature("abc"))
    assert not ReportLinks(secrets.token_bytes(32), "x").verify("abc", links.signature("abc"))


def test_the_fake_smsc_log_is_read_back() -> None:
    single = parse_fakesmsc_line(
        "2026-12-06 05:10:19 [1] [0] DEBUG: Got message 1: "
        "<1588 01012345678 ucs-2 %C5H%B1U%D5X%C18%C6%94%00+%00%2B>"
    )
    assert single is not None
    assert (single.sender, single.receiver, single.text()) == (
        "1588",
        "01012345678",
        "안녕하세요 +",
    )
    part = parse_fakesmsc_line(
        "... Got message 2: <1588 01012345678 udh %05%00%03%07%02%01 data %AC%00%AC%01>"
    )
    assert part is not None
    assert (part.concat, part.text()) == ((7, 2, 1), "가각")
    assert parse_fakesmsc_line("INFO: fakesmsc starting") is None


class _Session:
    """Enough of a session for enqueue_sms's checks, which refuse before anything is added."""

    def add(self, _: Any) -> None:
        raise AssertionError("nothing may be stored")


@pytest.mark.parametrize(
    ("to", "text", "code"),
    [
        ("010-12", "안내", "invalid_phone_number"),
        ("010-1234-5678", "   ", "sms_text_empty"),
        ("010-1234-5678", "가" * (67 * 10 + 1), "sms_text_too_long"),
    ],
)
async def test_enqueue_refuses_bad_input(to: str, text: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await service.enqueue_sms(
            _Session(),  # type: ignore[arg-type]
            cipher=PhoneCipher(secrets.token_bytes(32)),
            city_id=1,
            to_number=to,
            text=text,
            reference_kind="resident",
            reference_id="1",
            now=datetime(2026, 12, 6, tzinfo=UTC),
        )
    assert caught.value.code == code
