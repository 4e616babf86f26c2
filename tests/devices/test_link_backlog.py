"""A speaker that was frozen reads its whole backlog before acting on any of it: a cancel or a
resend queued behind a stale command is seen before that command can start."""

from __future__ import annotations

import asyncio
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.hub import Hub
from devices.link import Incoming, Link
from devices.link_settings import BrokerAddress, LinkSettings
from wire import contract

IDENTITY = contract.SpeakerIdentity(city="linkcity", district="d1", village="v1", speaker="s9")


async def test_every_waiting_packet_is_read_before_the_loop_runs_anything_else(
    mqtt_url: str,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    settled = asyncio.Event()

    def turn() -> None:
        seen.append("turn")
        if seen.count("turn") == 3:
            settled.set()

    def on_message(incoming: Incoming) -> None:
        seen.append(incoming.payload.decode())
        # What a speaker does with a command: work scheduled for later (audio to prepare).
        loop.call_soon(turn)

    broker = BrokerAddress.parse(mqtt_url)
    hub = Hub()
    link = Link(hub, LinkSettings(broker=broker), IDENTITY, on_message=on_message)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert await link.connect()
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        topic = contract.command_topic_speaker(IDENTITY.city, IDENTITY.speaker)
        # The loop stands still, as a frozen speaker's would, while its backlog arrives.
        for name in ("play", "cancel", "resend"):
            publisher.publish(topic, name.encode(), qos=1).wait_for_publish(5)
        time.sleep(0.5)  # noqa: ASYNC251 - on purpose: nothing on this loop may run meanwhile
        await asyncio.wait_for(settled.wait(), 10)
        assert seen[:3] == ["play", "cancel", "resend"], seen
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        await link.close()
        await hub.close()
