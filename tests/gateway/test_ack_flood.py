"""One speaker flooding its own ack topic, on a real broker: its fake refusals become a few
security events with a count, its excess is dropped and shown in /metrics, and an honest
speaker's ack is recorded in the first batch the intake takes, not behind the flood."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.bus import PER_SPEAKER_LIMIT
from gateway.deliveries.intake import UNMATCHED_MAX, Intake
from gateway.deliveries.models import Delivery
from gateway.devicesec.security_events import DISTINCT_PER_WINDOW
from gateway.speakers.models import Speaker
from tests.e2e.harness import metrics
from tests.gateway.broker_stack import BareSpeaker, BrokerStack, broker_stack
from tests.media import make_recording
from wire import contract
from wire.contract import AckStatus, RejectReason

ROGUE, HONEST = "d01-v001-s1", "d01-v002-s1"
BATCH = 50


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


async def _arrived(stack: BrokerStack, expected: Callable[[], bool]) -> None:
    """Wait until the bus has taken in (queued or dropped) what the test sent."""
    async with asyncio.timeout(60):
        while not expected():  # noqa: ASYNC110 - polling the bus's own counts
            await asyncio.sleep(0.05)


async def _drain(intake: Intake, stack: BrokerStack) -> None:
    while not stack.bus.incoming.empty():
        await intake.step()


async def test_fake_refusals_become_a_few_events_with_a_count(
    mqtt_url: str, tmp_path: Path
) -> None:
    # The intake waits while the flood arrives, then takes it in batches: the same for every run.
    async with broker_stack(
        mqtt_url, tmp_path, background_workers=False, ack_batch_max=BATCH
    ) as stack:
        intake: Intake = stack.app.state.intake
        async with BareSpeaker(stack.mqtt_url, await stack.identity(ROGUE), answer=False) as rogue:
            for _ in range(200):
                await rogue.ack(
                    contract.new_id(),
                    contract.new_id(),
                    AckStatus.REJECTED,
                    reason=RejectReason.BAD_SIGNATURE,
                )
            await _arrived(stack, lambda: stack.bus.incoming.qsize() == 200)
            await _drain(intake, stack)

        page = (
            await stack.client.get(
                "/api/v1/security-events", params={"speaker": ROGUE, "kind": "command_rejected"}
            )
        ).json()
        assert page["total"] == DISTINCT_PER_WINDOW, "a handful of rows, not one per report"
        assert sum(e["count"] for e in page["items"]) == 200, "every report counted"
        assert {e["reason"] for e in page["items"]} == {"bad_signature"}
        assert all(e["last_at"] >= e["at"] for e in page["items"])

        # Each of them matched no delivery: looked up until the speaker's allowance ran out
        # (checked per batch), then dropped without touching the database, and counted.
        looked_up = intake.counts["acks_unknown"]
        assert UNMATCHED_MAX <= looked_up < UNMATCHED_MAX + BATCH
        values = await metrics(stack.client)
        assert values['maeul_intake_dropped_total{reason="unmatched"}'] == 200 - looked_up
        floods = (
            await stack.client.get(
                "/api/v1/security-events", params={"speaker": ROGUE, "kind": "ack_flood"}
            )
        ).json()
        assert [(e["reason"], e["count"]) for e in floods["items"]] == [
            ("unmatched", 200 - looked_up)
        ]
        text = (await stack.client.get("/metrics")).text
        assert "# TYPE maeul_intake_dropped_total counter" in text
        assert "# HELP maeul_intake_dropped_total " in text


async def test_a_flooding_speaker_does_not_delay_an_honest_ack(
    mqtt_url: str, tmp_path: Path, recording: bytes
) -> None:
    flood = PER_SPEAKER_LIMIT + 1000
    async with broker_stack(mqtt_url, tmp_path, background_workers=False) as stack:
        intake: Intake = stack.app.state.intake
        honest_identity = await stack.identity(HONEST)
        async with (
            BareSpeaker(stack.mqtt_url, await stack.identity(ROGUE), answer=False) as rogue,
            BareSpeaker(stack.mqtt_url, honest_identity, answer=False) as honest,
        ):
            created = await stack.client.post(
                "/api/v1/broadcasts",
                data={"category": "administrative", "all_villages": "true"},
                files={"file": ("notice.m4a", recording, "audio/mp4")},
            )
            assert created.status_code == 201, created.text
            broadcast_id = created.json()["id"]
            assert await stack.app.state.publisher.publish_due() == 1
            async with asyncio.timeout(30):
                while not honest.commands:  # noqa: ASYNC110 - polling what the speaker got
                    await asyncio.sleep(0.05)
            [(_, command_id)] = honest.commands

            # Thousands of fake acks first, then one honest ack: all waiting for the intake.
            for _ in range(flood):
                await rogue.ack(contract.new_id(), contract.new_id(), AckStatus.RECEIVED)
            await honest.ack(command_id, broadcast_id, AckStatus.RECEIVED)
            await _arrived(
                stack,
                lambda: stack.bus.incoming.qsize() + stack.bus.dropped["sender_full"] == flood + 1,
            )
            assert stack.bus.dropped["sender_full"] == flood - PER_SPEAKER_LIMIT

            await intake.step()  # one batch, far smaller than the flood
            assert stack.bus.incoming.qsize() > 0, "the flood's tail still waits"
            async with stack.app.state.sessions() as session:
                state = await session.scalar(
                    select(Delivery.state)
                    .join(Speaker, Speaker.id == Delivery.speaker_id)
                    .where(Delivery.broadcast_id == broadcast_id, Speaker.code == HONEST)
                )
            assert state == "received", "the honest ack went in with the first batch"

        values = await metrics(stack.client)
        assert (
            values['maeul_intake_dropped_total{reason="sender_full"}'] == flood - PER_SPEAKER_LIMIT
        )
        assert values["maeul_intake_queue_messages"] == stack.bus.incoming.qsize()
