"""The gateway in process on a real broker and a real SQLite database, with speakers the test
drives as bare MQTT clients: for what only the real bus shows (catch-up backlogs, floods)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiomqtt
import httpx
from fastapi import FastAPI
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select

from gateway.app import create_app
from gateway.bus import MqttBus
from gateway.migrations import upgrade_async
from gateway.settings import MqttTarget, Settings
from gateway.speakers.models import Speaker
from tests.support.databases import seed_city
from tests.support.people import bearer
from wire import contract
from wire.contract import AckStatus, SpeakerIdentity

TOKEN = "broker-stack-" + "z" * 24


@dataclass
class BrokerStack:
    app: FastAPI
    client: httpx.AsyncClient
    bus: MqttBus
    settings: Settings
    mqtt_url: str

    async def identity(self, code: str) -> SpeakerIdentity:
        async with self.app.state.sessions() as session:
            speaker = await session.scalar(select(Speaker).where(Speaker.code == code))
        assert speaker is not None, code
        village = (await self.client.get(f"/api/v1/villages/{speaker.village_id}")).json()
        return SpeakerIdentity(
            city=self.settings.city_code,
            district=village["district_code"],
            village=village["code"],
            speaker=code,
        )


@contextlib.asynccontextmanager
async def broker_stack(
    mqtt_url: str, tmp_path: Path, *, background_workers: bool = True, **overrides: Any
) -> AsyncIterator[BrokerStack]:
    """A gateway of its own city and share group, so sessions other tests left on the broker
    take no share of its acks. It subscribes to its own city only: the broker is shared by
    every test of the process, and what other tests left on it (the retained presence of an
    earlier fleet, answered to any new subscription) would otherwise join the messages a
    test counts on the bus."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await upgrade_async(url)
    tag = secrets.token_hex(3)
    city = f"c{tag}"
    settings = Settings(
        environment="test",
        database_url=url,
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        city_code=city,
        mqtt_url=mqtt_url,
        replica_id=f"r{tag}",
        background_workers=background_workers,
        status_cache_s=0,
        quiet_hours="off",  # the tests run at any hour
        **overrides,
    )
    group = f"g{tag}"
    bus = MqttBus(
        MqttTarget(mqtt_url),
        client_id=f"stack-{tag}",
        subscriptions=[
            (f"$share/{group}/{contract.TOPIC_ROOT}/{city}/ack/+", contract.ACK_QOS),
            (f"$share/{group}/{contract.TOPIC_ROOT}/{city}/presence/+", contract.PRESENCE_QOS),
        ],
    )
    running = asyncio.create_task(bus.run(), name="stack-bus")
    try:
        app = create_app(settings, bus=bus)
        async with app.router.lifespan_context(app):
            await seed_city(app.state.sessions, preset="tiny", city_code=city)
            async with asyncio.timeout(20):
                while not bus.connected:  # noqa: ASYNC110 - polling the connection
                    await asyncio.sleep(0.05)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://gateway",
                headers=bearer(TOKEN),
            ) as client:
                yield BrokerStack(app, client, bus, settings, mqtt_url)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


@dataclass
class BareSpeaker:
    """A speaker as a bare MQTT client: counts every command by topic kind and id, and acks
    `received` once per play command id when `answer` is on (except for the broadcasts in
    `silent_for`). `persistent`: the broker keeps its session while it is away, as a real
    speaker's."""

    mqtt_url: str
    identity: SpeakerIdentity
    answer: bool = True
    persistent: bool = False
    silent_for: set[str] = field(default_factory=set)
    commands: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic kind, id)
    _client: aiomqtt.Client | None = None
    _reader: asyncio.Task[None] | None = None
    _acked: set[str] = field(default_factory=set)

    async def __aenter__(self) -> Self:
        target = MqttTarget(self.mqtt_url)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600 if self.persistent else 0
        self._client = aiomqtt.Client(
            target.host,
            target.port,
            identifier=contract.speaker_client_id(self.identity.speaker),
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not self.persistent,
            properties=props,
            max_inflight_messages=1000,
        )
        await self._client.__aenter__()
        for topic in self.identity.subscriptions():
            await self._client.subscribe(topic, qos=int(contract.COMMAND_QOS))
        self._reader = asyncio.create_task(self._read(), name=f"bare-{self.identity.speaker}")
        return self

    async def born(self, *, session_present: bool | None = None) -> None:
        await self._presence("online", session_present=session_present)

    async def gone(self) -> None:
        """What its will would say: it is away."""
        await self._presence("offline")

    async def _presence(
        self, status: Literal["online", "offline"], *, session_present: bool | None = None
    ) -> None:
        assert self._client is not None
        presence = contract.Presence(
            speaker=self.identity.speaker,
            status=status,
            at_ms=contract.now_ms(),
            session_present=session_present,
        )
        await self._client.publish(
            contract.presence_topic(self.identity.city, self.identity.speaker),
            contract.encode_presence(presence),
            qos=int(contract.PRESENCE_QOS),
        )

    async def ack(
        self, command_id: str, broadcast_id: str, status: AckStatus, **extra: Any
    ) -> None:
        assert self._client is not None
        ack = contract.Ack(
            command_id=command_id,
            broadcast_id=broadcast_id,
            speaker=self.identity.speaker,
            status=status,
            at_ms=contract.now_ms(),
            **extra,
        )
        await self._client.publish(
            contract.ack_topic(self.identity.city, self.identity.speaker),
            contract.encode_ack(ack),
            qos=int(contract.ACK_QOS),
        )

    async def publish_raw(self, payload: bytes) -> None:
        assert self._client is not None
        await self._client.publish(
            contract.ack_topic(self.identity.city, self.identity.speaker),
            payload,
            qos=int(contract.ACK_QOS),
        )

    async def _read(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            command = contract.decode_command(message.payload)
            kind = str(message.topic).split("/")[4]  # maeul/v1/{city}/cmd/{kind}/...
            self.commands[(kind, command.id)] += 1
            if (
                self.answer
                and command.type == "play"
                and command.id not in self._acked
                and command.broadcast_id not in self.silent_for
            ):
                self._acked.add(command.id)
                await self.ack(command.id, command.broadcast_id, AckStatus.RECEIVED)

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
        assert self._client is not None
        await self._client.__aexit__(exc_type, exc, tb)
