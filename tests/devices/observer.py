"""The gateway's side of the wire in integration tests: an independent MQTT client (aiomqtt)
that publishes commands and collects every speaker's acks and presence."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

import aiomqtt

from devices.link_settings import BrokerAddress
from wire import contract


class Observer:
    def __init__(self, mqtt_url: str, city: str) -> None:
        broker = BrokerAddress.parse(mqtt_url)
        self.city = city
        self.acks: list[contract.Ack] = []
        self.presence: list[tuple[str, contract.Presence | None, bool]] = []
        self._group = f"obs{secrets.token_hex(4)}"
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=f"observer-{self._group}",
            username=broker.username,
            password=broker.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=1000,
        )
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(contract.ack_subscription(self._group), qos=1)
        self._reader = asyncio.create_task(self._read(), name="observer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._client.__aexit__(exc_type, exc, tb)

    async def watch_presence(self, speakers: Iterable[str]) -> None:
        """Follow these speakers' presence, retained messages included."""
        for speaker in speakers:
            await self._client.subscribe(contract.presence_topic(self.city, speaker), qos=1)

    async def publish(self, topic: str, command: contract.Command | bytes) -> None:
        payload = command if isinstance(command, bytes) else contract.encode_command(command)
        await self._client.publish(topic, payload, qos=int(contract.COMMAND_QOS))

    async def until(self, done: Callable[[], bool], within: float = 30.0) -> None:
        """Wait until `done()` holds; checked on every message, and now and then for conditions
        on the fleet itself."""
        async with asyncio.timeout(within):
            while not done():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)

    def of(self, command_id: str) -> list[contract.Ack]:
        return [a for a in self.acks if a.command_id == command_id]

    def counts(self, command_id: str) -> Counter[tuple[str, str]]:
        """(speaker, status) -> how many acks."""
        return Counter((a.speaker, a.status.value) for a in self.of(command_id))

    def speakers_with(self, command_id: str, status: str) -> set[str]:
        return {a.speaker for a in self.of(command_id) if a.status == status}

    def last_presence(self, speaker: str) -> str | None:
        states = [p.status for s, p, _ in self.presence if s == speaker and p is not None]
        return states[-1] if states else None

    async def _read(self) -> None:
        async for message in self._client.messages:
            topic = str(message.topic)
            payload = message.payload
            assert isinstance(payload, bytes)
            try:
                city, speaker = contract.parse_speaker_topic(topic, "ack")
            except contract.WireError:
                city, speaker = contract.parse_speaker_topic(topic, "presence")
                if city == self.city:
                    state = contract.decode_presence(payload) if payload else None
                    self.presence.append((speaker, state, message.retain))
            else:
                if city == self.city:
                    self.acks.append(contract.decode_ack(payload))
            self._changed.set()
