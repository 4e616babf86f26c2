"""SMS through a real Kannel to its fake SMSC: Korean text intact, long texts in parts, states
from Kannel's own delivery reports, Kannel down or refusing, forged reports, the city's budget,
and two workers sharing one outbox."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway.logs import configure_logging
from gateway.residents.crypto import SYNTHETIC_CAPACITY, synthetic_number
from gateway.sms import service
from gateway.sms.states import SmsStatus
from maeul.kannel import KannelProcess
from tests.sms.conftest import SmsGateway, random_mobile, serve_gateway
from tests.support.net import free_port

NOTICE = "내일 오전 9시 마을회관에서 예방접종이 있습니다. 신분증을 가져오세요."
LONG_NOTICE = (
    "[김천시 재난안전] 오늘 밤부터 내일 오전까지 시간당 50mm 이상의 강한 비가 예상됩니다. "
    "하천변과 저지대 주민께서는 마을회관으로 대피해 주시고, 어르신 댁은 이웃이 한 번 더 "
    "살펴 주시기 바랍니다. 외출하실 때는 우산을 꼭 챙기세요. 문의: 마을 이장 또는 읍·면사무소."
)


def final(message: object) -> bool:
    return service.is_final(getattr(message, "status", ""))


async def test_korean_texts_reach_the_smsc_intact_and_reports_mark_them_delivered(
    sms_gateway: SmsGateway, kannel: KannelProcess, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("DEBUG")  # as the gateway process sets it up, at its most verbose
    caplog.set_level(logging.DEBUG)
    short_to, long_to = random_mobile(), random_mobile()
    code_to = random_mobile()
    short_id = await sms_gateway.enqueue(f"{short_to[:3]}-{short_to[3:7]}-{short_to[7:]}", NOTICE)
    long_id = await sms_gateway.enqueue(long_to, LONG_NOTICE)
    code_id = await sms_gateway.enqueue(code_to, "인증번호 482913", forget_text=True)

    assert await sms_gateway.worker.send_due() == Counter(sent=3)

    short = await sms_gateway.wait_for(short_id, final)
    long = await sms_gateway.wait_for(long_id, final)
    assert (short.status, short.last_report, short.parts) == (SmsStatus.DELIVERED, 1, 1)
    assert (long.status, long.last_report, long.parts) == (SmsStatus.DELIVERED, 1, 3)
    assert short.sent_at is not None
    assert short.finished_at is not None
    # Done with: no number left to open, and a verification code's text is gone (the notice's
    # text stays, for the record).
    code = await sms_gateway.wait_for(code_id, final)
    assert await asyncio.wait_for(kannel.smsc.wait_for(code_to), 30) == ["인증번호 482913"]
    assert (code.to_sealed, code.text, short.to_sealed, short.text) == (b"", "", b"", NOTICE)
    # UCS-2 at the SMSC, decoded back to exactly what was queued; the long one in its 3 parts.
    assert await asyncio.wait_for(kannel.smsc.wait_for(short_to), 30) == [NOTICE]
    assert await asyncio.wait_for(kannel.smsc.wait_for(long_to), 30) == [LONG_NOTICE]
    parts = [p for p in kannel.smsc.parts() if p.receiver == long_to]
    assert sorted(p.concat[1:] for p in parts if p.concat) == [(3, 1), (3, 2), (3, 3)]
    assert {p.sender for p in parts} == {"1588"}
    # The numbers never reach the database file in the clear, in any spelling.
    database = Path(sms_gateway.settings.database_url.split("///", 1)[1])
    stored = await asyncio.to_thread(database.read_bytes)
    for number in (short_to, long_to, long_to[3:], short_to[3:7], code_to):
        assert number.encode() not in stored
        assert number not in caplog.text
    assert sms_gateway.kannel.config.sendsms_password not in caplog.text


def _one_digit_off(signature: str) -> str:
    """The signature with its last hex digit changed (always changed: it may have been "0")."""
    return signature[:-1] + ("1" if signature.endswith("0") else "0")


async def test_a_forged_or_nonsensical_report_changes_nothing(
    sms_gateway: SmsGateway, client_for: Callable[[SmsGateway], httpx.AsyncClient]
) -> None:
    # Claimed but not yet sent: as a message is while its worker waits for Kannel's answer.
    message_id = await sms_gateway.enqueue(random_mobile(), NOTICE)
    async with sms_gateway.app.state.sessions() as session:
        [claim] = await service.claim_due(
            session,
            city_id=sms_gateway.app.state.city_id,
            worker_id="test",
            now=sms_gateway.app.state.clock.now(),
            lease=timedelta(seconds=60),
            daily_budget=100,
            limit=1,
        )
        await session.commit()
    assert claim.id == message_id
    links = sms_gateway.app.state.sms_links
    other = await sms_gateway.enqueue(random_mobile(), NOTICE)

    async with client_for(sms_gateway) as client:
        forged = [
            {"id": message_id, "sig": "0" * 64, "status": 1},
            {"id": message_id, "sig": links.signature(other), "status": 1},
            {"id": message_id, "sig": _one_digit_off(links.signature(message_id)), "status": 1},
        ]
        for params in forged:
            response = await client.get("/api/v1/sms/dlr", params=params)
            assert response.status_code == 403, response.text
            assert response.json()["error"] == "sms_report_forged"
        missing = await client.get("/api/v1/sms/dlr", params={"id": message_id, "status": 1})
        assert missing.status_code == 422
        signed = {"id": message_id, "sig": links.signature(message_id)}
        unknown = await client.get("/api/v1/sms/dlr", params={**signed, "status": 3})
        assert unknown.status_code == 422
        assert unknown.json()["error"] == "sms_report_status_unknown"
        assert (await sms_gateway.message(message_id)).status == SmsStatus.SENDING

        # The operator's SMSC refusing it (Kannel's DLR 16); the fake SMSC never does.
        rejected = await client.get("/api/v1/sms/dlr", params={**signed, "status": 16})
        assert rejected.json() == {"id": message_id, "status": "failed"}
        late = await client.get("/api/v1/sms/dlr", params={**signed, "status": 1})
        assert late.status_code == 409
        assert late.json()["error"] == "sms_report_not_applicable"
    failed = await sms_gateway.message(message_id)
    assert (failed.status, failed.reason, failed.last_report) == ("failed", "dlr_16", 16)
    assert (await sms_gateway.message(other)).status == SmsStatus.QUEUED


async def test_kannel_down_is_retried_with_backoff_then_fails_with_the_reason(
    sms_gateway: SmsGateway,
) -> None:
    down = sms_gateway.new_worker(
        sms_gateway.sender(url=f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"),
        sms_max_attempts=3,
        sms_retry_backoff_s=0.05,
    )
    message_id = await sms_gateway.enqueue(random_mobile(), NOTICE)

    assert await down.send_due() == Counter(retry=1)
    waiting = await sms_gateway.message(message_id)
    assert (waiting.status, waiting.attempts, waiting.reason) == (
        "queued",
        1,
        "kannel_unreachable",
    )
    assert waiting.next_attempt_at > waiting.created_at
    outcomes: Counter[str] = Counter()
    async with asyncio.timeout(10):
        while not outcomes["failed"]:
            outcomes += await down.send_due()
            await asyncio.sleep(0.05)
    failed = await sms_gateway.message(message_id)
    assert (failed.status, failed.attempts, failed.reason) == ("failed", 3, "kannel_unreachable")
    assert failed.sent_at is None

    # Kannel up but refusing the gateway's user: no use trying again.
    refused = sms_gateway.new_worker(sms_gateway.sender(password="not-the-password"))
    refused_id = await sms_gateway.enqueue(random_mobile(), NOTICE)
    assert await refused.send_due() == Counter(failed=1)
    message = await sms_gateway.message(refused_id)
    assert message.status == "failed"
    assert message.reason == "kannel_http_403: Authorization failed for sendsms"


async def test_the_city_budget_refuses_what_does_not_fit_the_day(
    sms_gateway: SmsGateway, kannel: KannelProcess
) -> None:
    worker = sms_gateway.new_worker(sms_daily_budget=4)
    first_to, long_to, last_to = random_mobile(), random_mobile(), random_mobile()
    first = await sms_gateway.enqueue(first_to, NOTICE)  # 1 part
    too_long = await sms_gateway.enqueue(long_to, LONG_NOTICE)  # 3 parts: 4 in all, fits
    over = await sms_gateway.enqueue(last_to, NOTICE)  # a fifth part does not

    assert await worker.send_due() == Counter(sent=2, over_budget=1)
    refused = await sms_gateway.message(over)
    assert (refused.status, refused.reason, refused.sent_at) == ("over_budget", "over_budget", None)
    for message_id in (first, too_long):
        assert (await sms_gateway.wait_for(message_id, final)).status == SmsStatus.DELIVERED
    async with sms_gateway.app.state.sessions() as session:
        used = await service.budget_used(
            session, sms_gateway.app.state.city_id, sms_gateway.app.state.clock.now()
        )
    assert used == 4
    assert kannel.smsc.messages_to(last_to) == []
    # Over the budget is final: a later pass sends nothing more.
    assert await worker.send_due() == Counter()


async def test_two_workers_never_send_one_message_twice(
    migrated_database_url: str, tmp_path: Path, kannel: KannelProcess
) -> None:
    async with serve_gateway(migrated_database_url, tmp_path / "data", kannel) as gateway:
        numbers = [random_mobile() for _ in range(12)]
        ids = [await gateway.enqueue(number, f"{NOTICE} ({n})") for n, number in enumerate(numbers)]
        first, second = gateway.new_worker(), gateway.new_worker()

        outcomes = await asyncio.gather(first.send_due(), second.send_due())

        assert sum(outcomes, Counter()) == Counter(sent=12)
        for message_id in ids:
            assert (await gateway.wait_for(message_id, final)).status == SmsStatus.DELIVERED
        for n, number in enumerate(numbers):
            assert await asyncio.wait_for(kannel.smsc.wait_for(number), 30) == [f"{NOTICE} ({n})"]


async def test_a_synthetic_number_is_never_sent_unless_allowed(
    sms_gateway: SmsGateway, kannel: KannelProcess
) -> None:
    seeded = synthetic_number(secrets.randbelow(SYNTHETIC_CAPACITY))
    refused = await sms_gateway.enqueue(seeded, NOTICE)
    assert await sms_gateway.worker.send_due() == Counter(failed=1)
    message = await sms_gateway.message(refused)
    assert (message.status, message.reason, message.sent_at) == ("failed", "synthetic_number", None)
    assert kannel.smsc.messages_to(seeded) == []

    allowed = await sms_gateway.enqueue(seeded, NOTICE)
    assert await sms_gateway.new_worker(sms_allow_synthetic=True).send_due() == Counter(sent=1)
    assert (await sms_gateway.wait_for(allowed, final)).status == SmsStatus.DELIVERED
    assert await asyncio.wait_for(kannel.smsc.wait_for(seeded), 30) == [NOTICE]
