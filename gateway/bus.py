"""The MQTT bus: one connection per replica, owned by the app's lifespan, with a fake beside it.

Publishing returns once the broker has the message (PUBACK for QoS 1). That only means the broker
holds it: speakers acknowledge on their own topics, read here through shared subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.settings import MqttTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes


class BusUnavailable(Exception):
    """The broker cannot be reached right now; the outbox keeps the work for later."""


class Bus(Protocol):
    incoming: asyncio.Queue[Incoming]

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, expiry_s: int | None = None
    ) -> None: ...

    @property
    def connected(self) -> bool: ...


class MqttBus:
    """aiomqtt over paho, MQTT 5, reconnecting with jittered exponential back-off."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]],
        queue_limit: int = 200_000,
        max_inflight: int = 1000,
    ) -> None:
        self._target = target
        self._client_id = client_id
        self._subscriptions = list(subscriptions)
        self._max_inflight = max_inflight
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue(maxsize=queue_limit)
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def _make_client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Keep our shared-subscription session for a while, so acks published during a short
        # reconnect wait for us in the broker instead of being dropped.
        props.SessionExpiryInterval = 300
        tls = ssl.create_default_context() if self._target.tls else None
        return aiomqtt.Client(
            self._target.host,
            self._target.port,
            username=self._target.username,
            password=self._target.password,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=30,
            tls_context=tls,
            max_inflight_messages=self._max_inflight,
            timeout=10,
        )

    async def run(self) -> None:
        """Stay connected until cancelled; every message on our subscriptions goes to `incoming`."""
        backoff = 0.5
        while True:
            try:
                async with self._make_client() as client:
                    for topic, qos in self._subscriptions:
                        await client.subscribe(topic, qos=qos)
                    self._client = client
                    self._ready.set()
                    backoff = 0.5
                    log.info("MQTT connected to %s as %s", self._target.redacted(), self._client_id)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode()
                        item = Incoming(str(message.topic), bytes(payload))
                        try:
                            self.incoming.put_nowait(item)
                        except asyncio.QueueFull:
                            self.dropped += 1
            except aiomqtt.MqttError as exc:
                log.warning("MQTT connection lost (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, expiry_s: int | None = None
    ) -> None:
        client = self._client
        if client is None or not self._ready.is_set():
            raise BusUnavailable("MQTT broker not connected")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        try:
            await client.publish(topic, payload, qos=qos, properties=props, timeout=15)
        except aiomqtt.MqttError as exc:
            raise BusUnavailable(str(exc)) from exc


class FakeBus:
    """In-memory bus for unit tests: records publishes; tests put incoming messages themselves."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue()
        self.published: list[tuple[str, bytes, int, int | None]] = []
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, expiry_s: int | None = None
    ) -> None:
        if not self.up:
            raise BusUnavailable("fake bus is down")
        self.published.append((topic, payload, qos, expiry_s))
