"""Misbehaving speakers for fault tests: real MQTT clients holding a speaker's identity that
never acknowledge, answer with garbage, or flood the gateway with acknowledgements."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from types import TracebackType
from typing import Self

import aiomqtt

from devices.link_settings import BrokerAddress
from wire import contract
from wire.contract import AckStatus, SpeakerIdentity


class Misbehaviour(enum.Enum):
    SILENT = "silent"  # takes every command, never says a word about it
    GARBAGE = "garbage"  # answers every command with bytes that are no ack
    FLOOD = "flood"  # answers every command, each ack thousands of times


GARBAGE: tuple[bytes, ...] = (
    b"",
    b"\x00\xff\xfe garbage",
    b"{not json",
    b"[]",
    json.dumps({"v": 1, "status": "played"}).encode(),
    json.dumps({"v": 99, "command_id": "x", "status": "exploded"}).encode(),
    b"A" * (contract.MAX_ACK_BYTES + 1),
)


class RogueSpeaker:
    """One speaker identity driven by a test, over its own MQTT 5 session (``spk-<id>``)."""

    def __init__(
        self,
        mqtt_url: str,
        identity: SpeakerIdentity,
        misbehaviour: Misbehaviour,
        *,
        copies: int = 1000,
        garbage_rounds: int = 5,
    ) -> None:
        broker = BrokerAddress.parse(mqtt_url)
        self.identity = identity
        self.misbehaviour = misbehaviour
        self.copies = copies
        self.garbage_rounds = garbage_rounds
        self.commands: list[contract.Command] = []
        self.sent = 0  # messages published on its ack topic
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=contract.speaker_client_id(identity.speaker),
            username=broker.username,
            password=broker.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=1000,
        )
        self._ack_topic = contract.ack_topic(identity.city, identity.speaker)
        self._reader: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.identity.speaker

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        for topic in self.identity.subscriptions():
            await self._client.subscribe(topic, qos=int(contract.COMMAND_QOS))
        birth = contract.Presence(speaker=self.id, status="online", at_ms=contract.now_ms())
        await self._client.publish(
            contract.presence_topic(self.identity.city, self.id),
            contract.encode_presence(birth),
            qos=int(contract.PRESENCE_QOS),
            retain=True,
        )
        self._reader = asyncio.create_task(self._read(), name=f"rogue-{self.id}")
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
        # Leave as a speaker shutting down would, so no retained "online" outlives the test.
        gone = contract.Presence(speaker=self.id, status="offline", at_ms=contract.now_ms())
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.publish(
                contract.presence_topic(self.identity.city, self.id),
                contract.encode_presence(gone),
                qos=int(contract.PRESENCE_QOS),
                retain=True,
            )
        await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            try:
                command = contract.decode_command(payload)
            except contract.WireError:
                continue
            self.commands.append(command)
            if command.type != "play":
                continue
            if self.misbehaviour is Misbehaviour.GARBAGE:
                for _ in range(self.garbage_rounds):
                    for junk in GARBAGE:
                        await self._send(junk)
            elif self.misbehaviour is Misbehaviour.FLOOD:
                await self._flood(command)

    async def _flood(self, command: contract.Command) -> None:
        """Every ack of a normal play, each repeated `copies` times; then as many "received"
        acks that differ only in their time, which no duplicate check can catch."""
        at = contract.now_ms()
        for offset, status in enumerate((AckStatus.RECEIVED, AckStatus.PLAYING, AckStatus.PLAYED)):
            payload = contract.encode_ack(self._ack(command, status, at + offset))
            for _ in range(self.copies):
                await self._send(payload)
        for n in range(self.copies):
            await self._send(contract.encode_ack(self._ack(command, AckStatus.RECEIVED, at + n)))

    def _ack(self, command: contract.Command, status: AckStatus, at_ms: int) -> contract.Ack:
        # A flood of honest acks: its "played" proves a full play of the first encoding.
        proof = (
            {
                "audio_sha256": command.audio[0].sha256,
                "played_ms": command.audio[0].duration_ms,
                "level_dbfs": -17.2,
            }
            if status is AckStatus.PLAYED and command.audio
            else {}
        )
        return contract.Ack(
            command_id=command.id,
            broadcast_id=command.broadcast_id,
            speaker=self.id,
            status=status,
            at_ms=at_ms,
            **proof,
        )

    async def _send(self, payload: bytes) -> None:
        await self._client.publish(self._ack_topic, payload, qos=int(contract.ACK_QOS))
        self.sent += 1
