"""The fallback in process: a village with no speaker online is told by SMS at once, one whose
speakers played is not, one whose speakers did not play within the rule's time is told then;
each resident once; a test broadcast never reaches a phone; the rules' endpoint and its
refusals; the broadcast's record shows the phone counts per village."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.broadcasts.models import Broadcast
from gateway.fallback.channels import Fanout, sms_text, sms_to
from gateway.fallback.models import ChannelDelivery
from gateway.fallback.worker import FallbackWorker
from gateway.residents.models import Channel
from gateway.residents.reach import reachable_residents
from tests.fallback.conftest import add_resident, fallback_messages
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _ack, _commands, _create, _detail, _presence, recording
from tests.residents.conftest import spellings
from wire.contract import AckStatus

__all__ = ["recording"]

PHONE = ("queued", "sent", "delivered", "failed", "skipped")

ON_SQLITE = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)


async def _villages_with_speakers(stack: Stack) -> dict[int, list[str]]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    found: dict[int, list[str]] = {}
    for speaker in fleet:
        found.setdefault(speaker["village_id"], []).append(speaker["code"])
    return found


def _by_village(detail: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {v["village_id"]: v for v in detail["village_deliveries"]}


# On both databases: two replicas' workers race for the same villages.
async def test_villages_whose_speakers_missed_are_told_by_sms_once(
    stack: Stack, recording: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The statements too, even after another test in this process ran the gateway's logging
    # set-up, which quiets them (caplog restores the level afterwards).
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    client, worker = stack.client, stack.app.state.fallback_worker
    answers: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append(response.text)

    client.event_hooks["response"].append(keep)
    rules = (await client.get("/api/v1/fallback-rules")).json()
    assert {r["category"]: r["after_s"] for r in rules} == {
        "village_notice": 600,
        "administrative": 600,
        "crime_prevention": 600,
        "disaster": 120,
    }
    assert all(r["channels"] == ["sms"] and r["default"] for r in rules)
    refused = await client.put(
        "/api/v1/fallback-rules/administrative", json={"after_s": 60, "channels": ["fax"]}
    )
    assert (refused.status_code, refused.json()["error"]) == (422, "fallback_channel_unavailable")
    rule = await client.put("/api/v1/fallback-rules/administrative", json={"after_s": 60})
    assert rule.status_code == 200, rule.text
    assert (rule.json()["after_s"], rule.json()["default"]) == (60, False)

    speakers = await _villages_with_speakers(stack)
    dark, heard, silent = sorted(speakers)[:3]
    for village in (heard, silent):
        for code in speakers[village]:
            _presence(stack, code, "online")
    await stack.deliver()
    now = stack.clock.now().isoformat()
    residents = {
        dark: [
            await add_resident(client, dark, p, now) for p in ("010-2000-0001", "010-2000-0002")
        ],
        heard: [await add_resident(client, heard, "010-2000-0003", now)],
        silent: [await add_resident(client, silent, "010-2000-0004", now)],
    }
    # Consenting to web push only: not told by SMS.
    await add_resident(client, dark, "010-2000-0005", now, channels=["web_push"])
    # Withdrawn before the village is told: never sent anything.
    gone = await add_resident(client, silent, "010-2000-0006", now)

    status, body = await _create(
        stack, recording, village_ids=[dark, heard, silent], text="내일 오전 9시 단수 예정입니다."
    )
    assert status == 201, body
    await stack.publish_pending()
    command = _commands(stack)[0][1]
    for code in speakers[heard]:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()

    # At once: the village with no speaker online; the others wait for the rule's minute.
    await worker.run_once()
    sent = await fallback_messages(stack.app.state.sessions)
    assert len(sent) == len(residents[dark])
    villages = _by_village(await _detail(stack, body["id"]))
    assert {m.text for m in sent} == {
        f"[마을방송] {villages[dark]['name']}: 내일 오전 9시 단수 예정입니다.\n"
        f"듣기: {stack.settings.public_url}/notices/{dark}"
    }
    assert villages[dark]["fallback"]["state"] == "notified"
    assert villages[dark]["fallback"]["reason"] == "offline"
    assert villages[dark]["phone"] == {
        "queued": 2,
        "sent": 0,
        "delivered": 0,
        "failed": 0,
        "skipped": 0,
    }
    # Every speaker of this one played: settled now, nothing to wait for.
    assert villages[heard]["fallback"]["reason"] == "played"
    assert villages[silent]["fallback"]["state"] == "waiting"
    assert villages[heard]["speakers_played"] == len(speakers[heard])
    assert villages[silent]["households_confirmed"] == 0

    assert (await client.delete(f"/api/v1/residents/{gone}")).status_code == 200
    stack.clock.advance(61)
    # Two replicas at once, then again: nothing is told twice.
    other = FallbackWorker(
        stack.app.state.sessions,
        stack.settings,
        stack.clock,
        city_id=stack.app.state.city_id,
        cipher=stack.app.state.phone_cipher,
    )
    await asyncio.gather(worker.run_once(), other.run_once())
    await worker.run_once()
    sent = await fallback_messages(stack.app.state.sessions)
    assert len(sent) == len(residents[dark]) + len(residents[silent])
    detail = await _detail(stack, body["id"])
    villages = _by_village(detail)
    assert (villages[heard]["fallback"]["state"], villages[heard]["fallback"]["reason"]) == (
        "not_needed",
        "played",
    )
    assert villages[heard]["phone"]["queued"] == 0
    assert (villages[silent]["fallback"]["state"], villages[silent]["fallback"]["reason"]) == (
        "notified",
        "not_played",
    )
    assert villages[silent]["phone"]["queued"] == 1
    assert detail["phone"]["queued"] == 3
    # No number in the outbox, the database's files, the logs (SQL parameters included) or
    # any answer.
    assert all(b"2000" not in m.to_sealed for m in sent)
    numbers = [f"0102000000{n}" for n in range(1, 7)]
    spelled = [s for n in numbers for s in spellings(n)]
    if stack.settings.is_sqlite:
        database = Path(stack.settings.database_url.split("///", 1)[1])
        for stored in database.parent.glob(database.name + "*"):
            raw = stored.read_bytes()
            assert not [s for s in spelled if s.encode() in raw], stored.name
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    if stack.settings.is_sqlite:  # whose statements are logged with their parameters
        assert "INSERT INTO sms_messages" in logged
    assert not [s for s in spelled if s in logged]
    assert not [s for s in spelled for text in answers if s in text]


@ON_SQLITE
async def test_test_broadcasts_never_reach_phones_unless_the_rule_says_so(
    stack: Stack, recording: bytes
) -> None:
    client, worker = stack.client, stack.app.state.fallback_worker
    village = sorted(await _villages_with_speakers(stack))[0]
    await add_resident(client, village, "010-3000-0001", stack.clock.now().isoformat())
    status, body = await _create(stack, recording, village_ids=[village], mode="test")
    assert status == 201, body
    await worker.run_once()
    stack.clock.advance(3600)
    await worker.run_once()
    assert await fallback_messages(stack.app.state.sessions) == []
    fallback = _by_village(await _detail(stack, body["id"]))[village]["fallback"]
    assert (fallback["state"], fallback["reason"]) == ("not_needed", "drill")

    drills = await client.put(
        "/api/v1/fallback-rules/administrative", json={"after_s": 0, "drills": True}
    )
    assert drills.status_code == 200, drills.text
    status, body = await _create(stack, recording, village_ids=[village], mode="exercise")
    await worker.run_once()
    assert len(await fallback_messages(stack.app.state.sessions)) == 1
    assert (await client.delete("/api/v1/fallback-rules/administrative")).status_code == 204
    assert (await client.get("/api/v1/fallback-rules")).json()[1]["default"] is True


@ON_SQLITE
async def test_a_resident_withdrawn_after_being_chosen_is_skipped(
    stack: Stack, recording: bytes
) -> None:
    client = stack.client
    village = sorted(await _villages_with_speakers(stack))[0]
    now = stack.clock.now().isoformat()
    staying = await add_resident(client, village, "010-4000-0001", now)
    leaving = await add_resident(client, village, "010-4000-0002", now)
    status, body = await _create(stack, recording, village_ids=[village], text="안내")
    assert status == 201, body
    async with stack.app.state.sessions() as session:
        chosen = await reachable_residents(
            session, stack.app.state.city_id, [village], Channel.SMS, now=stack.clock.now()
        )
    assert {r.resident_id for r in chosen} == {staying, leaving}
    # Withdrawn between the choice and the send (another request, committed meanwhile).
    assert (await client.delete(f"/api/v1/residents/{leaving}")).status_code == 200
    async with stack.app.state.sessions() as session:
        fanout = Fanout(
            session=session,
            settings=stack.settings,
            cipher=stack.app.state.phone_cipher,
            broadcast=await session.get_one(Broadcast, body["id"]),
            village_id=village,
            village_name="",
            now=stack.clock.now(),
        )
        assert await sms_to(fanout, chosen) == 1
        assert await sms_to(fanout, chosen) == 0  # a second pass tells no one twice
        await session.commit()
    phone = _by_village(await _detail(stack, body["id"]))[village]["phone"]
    assert phone == dict.fromkeys(PHONE, 0) | {"queued": 1, "skipped": 1}
    async with stack.app.state.sessions() as session:
        rows = list(await session.scalars(select(ChannelDelivery)))
    assert {(r.resident_id, r.state, r.reason) for r in rows} == {
        (staying, "queued", None),
        (leaving, "skipped", "consent_withdrawn"),
    }


def test_a_long_text_is_cut_to_the_budget_and_keeps_its_link() -> None:
    broadcast = Broadcast(text="가" * 2000, title=None)
    text = sms_text(broadcast, "상촌리", "https://maeul.example/notices/7", max_parts=2)
    assert text.startswith("[마을방송] 상촌리: 가")
    assert text.endswith("…\n듣기: https://maeul.example/notices/7")
    assert len(text.encode("utf-16-be")) // 2 <= 2 * 67
