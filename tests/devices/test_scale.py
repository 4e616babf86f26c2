"""Two thousand simulated speakers in one process on a broker of their own: each acks once."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from tests.devices.brokers import mosquitto, needs_mosquitto
from tests.devices.commands import audio, command, opus_clip
from tests.devices.observer import Observer
from tests.support.net import free_port
from wire import contract

SPEAKERS = 2000


@pytest.mark.slow
@needs_mosquitto
async def test_two_thousand_speakers_each_ack_a_city_wide_command_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    city = f"x{secrets.token_hex(3)}"
    speakers = [
        SimSpeaker(
            contract.SpeakerIdentity(
                city=city, district=f"d{i % 21}", village=f"v{i % 358}", speaker=f"s{i:05d}"
            )
        )
        for i in range(SPEAKERS)
    ]
    # The gateway's shared subscription takes 3 acks per speaker in one burst.
    with mosquitto(tmp_path, port, "max_queued_messages 100000\nmax_inflight_messages 1000\n"):
        fleet = Fleet(FleetConfig(mqtt_url=url, speed=50, session_expiry_s=60))
        await fleet.start(speakers)
        try:
            assert fleet.stats().online == SPEAKERS
            async with Observer(url, city) as observer:
                cmd = command(city=city, at_ms=contract.now_ms(), refs=(audio(opus_clip(0.5)),))
                await observer.publish(contract.command_topic_all(city), cmd)
                everyone = {s.id for s in fleet}
                await observer.until(
                    lambda: observer.speakers_with(cmd.id, "played") == everyone, within=60
                )
                counts = observer.counts(cmd.id)
                assert set(counts.values()) == {1}
                assert len(counts) == 3 * SPEAKERS
            stats = fleet.stats()
            assert (stats.played, stats.decodes) == (SPEAKERS, 1)
        finally:
            await fleet.stop()
