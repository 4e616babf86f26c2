"""Live frames onto MQTT: one connection per replica for live audio, with a fake beside it.

Kept apart from the command bus: frames are many, small and QoS 0, and must not queue behind a
burst of commands or acks. Each frame is published once per group topic; the broker fans out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Sequence
from typing import Protocol

import aiomqtt

from gateway.settings import MqttTarget

log = logging.getLogger(__name__)


class FanoutUnavailable(Exception):
    """The broker cannot take live frames right now."""


class LiveBus(Protocol):
    async def publish(self, topics: Sequence[str], payload: bytes, *, qos: int) -> None: ...

    @property
    def connected(self) -> bool: ...


class MqttLiveBus:
    """aiomqtt, MQTT 5, reconnecting with jittered back-off; run `run` for the app's lifetime."""

    def __init__(self, target: MqttTarget, *, client_id: str) -> None:
        self._target = target
        self._client_id = client_id
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self._target.host,
                    self._target.port,
                    username=self._target.username,
                    password=self._target.password,
                    identifier=self._client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    keepalive=30,
                    tls_context=ssl.create_default_context() if self._target.tls else None,
                    max_inflight_messages=1000,
                    max_queued_outgoing_messages=20_000,
                    timeout=10,
                ) as client:
                    self._client = client
                    self._ready.set()
                    backoff = 0.5
                    # Nothing to read; wait here until the connection drops.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                log.warning("live MQTT connection lost (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    async def publish(self, topics: Sequence[str], payload: bytes, *, qos: int) -> None:
        client = self._client
        if client is None:
            raise FanoutUnavailable("live MQTT connection not ready")
        try:
            await asyncio.gather(
                *(client.publish(topic, payload, qos=qos, timeout=10) for topic in topics)
            )
        except aiomqtt.MqttError as exc:
            raise FanoutUnavailable(str(exc)) from exc


class FakeLiveBus:
    """In-memory: records what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int]] = []
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    async def publish(self, topics: Sequence[str], payload: bytes, *, qos: int) -> None:
        if not self.up:
            raise FanoutUnavailable("fake live bus is down")
        self.published += [(topic, payload, qos) for topic in topics]
