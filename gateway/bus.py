"""The MQTT bus: one connection per replica, owned by the app's lifespan, with a fake beside it.

Publishing returns once the broker has the message (PUBACK for QoS 1). That only means the broker
holds it: speakers acknowledge on their own topics, read here through shared subscriptions.

After a reconnection the bus cannot know which speakers stayed connected (a restarted broker
publishes no wills), so it reports since when presence is in doubt; the sweeper pauses retries
for speakers not heard from since, and their birth messages bring a catch-up.

The client id is new at every start of a replica (nobody can guess it and take the session
over), and kept across reconnections within the process, so a network break loses no ack. A
replica that crashed and restarts first resumes the session it left under its previous id
(`predecessors`): the acks queued there are read, then that session ends. A replica that stops
on purpose leaves the shared subscriptions first: the broker goes on handing a disconnected
session its share of the group's messages until the session expires, so a replica scaled away
would otherwise take a share of every speaker's acks and births with it for minutes. Anyone
taking the session over anyway (the gateway's own broker password under its client id) is
counted, and said loudly when it repeats.

Received messages wait in a fair queue: one bounded line per speaker, served in turn, so a
speaker that floods its topic fills its own line (the excess is dropped and counted) and never
delays another speaker's ack behind its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import Clock, SystemClock
from gateway.settings import MqttTarget

log = logging.getLogger(__name__)

# MQTT 5 reason code of a DISCONNECT sent because another client connected with our client id.
SESSION_TAKEN_OVER: Final = 142
# Take-overs within this many seconds that mean another process holds the same client id.
TAKEOVER_WINDOW_S: Final = 60.0
# A QoS 1 publish without PUBACK for this long means the connection is dead, whatever it says.
PUBLISH_TIMEOUT_S: Final = 10.0
# How long the broker keeps the session of a replica that vanished without leaving: long enough
# for a supervisor to restart it with the acks queued meanwhile, short enough that a replica
# that never comes back stops taking its share of the group's messages soon.
SESSION_EXPIRY_S: Final = 120
# The broker's answer to each UNSUBSCRIBE when a replica leaves, at most.
LEAVE_TIMEOUT_S: Final = 5.0
# Messages received and not yet taken by the intake, in all and from one speaker. A speaker
# answering a catch-up of a hundred broadcasts sends a few hundred acks; ten times that from one
# speaker, before the intake could take any, is a flood.
QUEUE_LIMIT: Final = 200_000
PER_SPEAKER_LIMIT: Final = 2_000


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes


class QueueFull(asyncio.QueueFull):
    """A message the fair queue has no room for; `reason` says whose line was full."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FairQueue:
    """Received messages, one bounded line per sender (the last topic segment: the speaker),
    served round robin: whoever floods waits behind itself only.

    The same calls as the asyncio.Queue it replaces, for one or more consumers on one loop.
    """

    def __init__(self, *, maxsize: int = 0, per_sender: int = 0) -> None:
        self._maxsize = maxsize
        self._per_sender = per_sender
        self._lines: dict[str, deque[Incoming]] = {}
        self._turns: deque[str] = deque()  # senders with messages waiting, in serving order
        self._size = 0
        self._waiting = asyncio.Event()

    def qsize(self) -> int:
        return self._size

    def empty(self) -> bool:
        return self._size == 0

    def senders(self) -> int:
        return len(self._lines)

    def put_nowait(self, item: Incoming) -> None:
        if self._maxsize and self._size >= self._maxsize:
            raise QueueFull("queue_full")
        sender = item.topic.rpartition("/")[2]
        line = self._lines.get(sender)
        if line is None:
            line = self._lines[sender] = deque()
            self._turns.append(sender)
        elif self._per_sender and len(line) >= self._per_sender:
            raise QueueFull("sender_full")
        line.append(item)
        self._size += 1
        self._waiting.set()

    def get_nowait(self) -> Incoming:
        if not self._turns:
            raise asyncio.QueueEmpty
        sender = self._turns.popleft()
        line = self._lines[sender]
        item = line.popleft()
        if line:
            self._turns.append(sender)
        else:
            del self._lines[sender]
        self._size -= 1
        return item

    async def get(self) -> Incoming:
        while not self._size:
            self._waiting.clear()
            await self._waiting.wait()
        return self.get_nowait()


class BusUnavailable(Exception):
    """The broker cannot be reached right now; the outbox keeps the work for later."""


class Bus(Protocol):
    incoming: FairQueue
    # Messages dropped on arrival, by reason (the queue or the sender's line full).
    dropped: Counter[str]

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, expiry_s: int | None = None
    ) -> None: ...

    @property
    def connected(self) -> bool: ...

    @property
    def presence_doubt_since(self) -> datetime | None:
        """When the current connection began, if presence learned before it may be stale."""
        ...

    async def leave(self) -> None:
        """Before a graceful stop: take no further share of the speakers' messages."""
        ...


class MqttBus:
    """aiomqtt over paho, MQTT 5, reconnecting with jittered exponential back-off."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]],
        queue_limit: int = QUEUE_LIMIT,
        per_speaker_limit: int = PER_SPEAKER_LIMIT,
        max_inflight: int = 1000,
        clock: Clock | None = None,
        predecessors: Sequence[str] = (),
    ) -> None:
        self._target = target
        # Client ids of earlier starts of this replica whose sessions may still be there.
        self._predecessors = [p for p in predecessors if p != client_id]
        self._clock = clock or SystemClock()
        self._client_id = client_id
        self._subscriptions = list(subscriptions)
        self._max_inflight = max_inflight
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self.incoming = FairQueue(maxsize=queue_limit, per_sender=per_speaker_limit)
        self.dropped: Counter[str] = Counter()
        self.connections = 0
        self.takeovers = 0
        self._takeover_times: list[float] = []
        self._doubt_since: datetime | None = None
        self._heard_at: datetime | None = None  # last sign of life on the current connection
        self._broken = asyncio.Event()
        self._leaving = False

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def presence_doubt_since(self) -> datetime | None:
        return self._doubt_since if self.connected else None

    def _make_client(
        self, client_id: str | None = None, expiry_s: int = SESSION_EXPIRY_S
    ) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Keep our shared-subscription session for a while, so acks published during a short
        # reconnect wait for us in the broker instead of being dropped.
        props.SessionExpiryInterval = expiry_s
        tls = ssl.create_default_context() if self._target.tls else None
        return aiomqtt.Client(
            self._target.host,
            self._target.port,
            username=self._target.username,
            password=self._target.password,
            identifier=client_id or self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=30,
            tls_context=tls,
            max_inflight_messages=self._max_inflight,
            timeout=10,
            queue_type=_handoff_to(self),
        )

    async def run(self) -> None:
        """Stay connected until cancelled; every message on our subscriptions goes to `incoming`."""
        backoff = 0.5
        predecessors, self._predecessors = self._predecessors, []
        for client_id in predecessors:
            await self._take_over(client_id)
        while True:
            try:
                async with self._make_client() as client:
                    if self._leaving:
                        # Reconnected while stopping: the resumed session still holds the
                        # subscriptions; end them and take nothing more.
                        await self._unsubscribe(client)
                    else:
                        for topic, qos in self._subscriptions:
                            await client.subscribe(topic, qos=qos)
                    self._client = client
                    if self._heard_at is not None:
                        # The connection was lost: the broker may have restarted without
                        # publishing any will, so whoever was online when we last heard from
                        # it may not be any more. Presence newer than that is news.
                        self._doubt_since = self._heard_at
                    self._heard_at = self._clock.now()
                    self.connections += 1
                    self._broken.clear()
                    self._ready.set()
                    backoff = 0.5
                    log.info("MQTT connected to %s as %s", self._target.redacted(), self._client_id)
                    await self._read_until_broken(client)
            except aiomqtt.MqttError as exc:
                if self._taken_over(exc):
                    # Do not fight over the session in a tight loop.
                    backoff = max(backoff, 5.0)
                log.warning("MQTT connection lost (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._ready.clear()
                self._client = None
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    async def _take_over(self, client_id: str) -> None:
        """Resume the session a previous start of this replica left (it crashed, or was
        killed): the acks the broker queued in it come to `incoming`, then the session leaves
        the shared subscriptions and ends, so the broker hands it no further share."""
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_S * (len(self._subscriptions) + 2)):
                async with self._make_client(client_id, expiry_s=0) as client:
                    await self._unsubscribe(client)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("could not end the previous session %s (%s)", client_id, exc)
        else:
            log.info("ended the previous session %s of this replica", client_id)

    async def _read_until_broken(self, client: aiomqtt.Client) -> None:
        reader = asyncio.create_task(self._read(client), name="mqtt-bus-reader")
        broken = asyncio.create_task(self._broken.wait(), name="mqtt-bus-watch")
        try:
            await asyncio.wait({reader, broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, broken):
                task.cancel()
            await asyncio.gather(reader, broken, return_exceptions=True)
        if not reader.cancelled() and (error := reader.exception()) is not None:
            raise error  # the connection's own end
        if self._broken.is_set():
            raise aiomqtt.MqttError("publishes time out on this connection")
        raise aiomqtt.MqttError("the broker ended the message stream")

    async def _read(self, client: aiomqtt.Client) -> None:
        """Ends (with the connection's error) when the connection does. The messages themselves
        never wait here: `_Handoff` moves each one to `incoming` as paho reads it."""
        async for message in client.messages:
            self._accept(message)

    def _accept(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        self._heard_at = self._clock.now()
        try:
            self.incoming.put_nowait(Incoming(str(message.topic), bytes(payload)))
        except QueueFull as full:
            self.dropped[full.reason] += 1

    async def leave(self) -> None:
        """Leave the shared subscriptions, so the broker hands this replica's share of acks and
        presence to the replicas that stay (or, with none left, keeps nothing for a replica that
        may never return). Whatever reached us before the broker's answer is already in
        `incoming`, in order, for the intake to record before the process ends."""
        self._leaving = True
        client = self._client
        if client is not None and self._ready.is_set():
            await self._unsubscribe(client)

    async def _unsubscribe(self, client: aiomqtt.Client) -> None:
        for topic, _ in self._subscriptions:
            try:
                await client.unsubscribe(topic, timeout=LEAVE_TIMEOUT_S)
            except aiomqtt.MqttError as exc:
                log.warning("could not leave %s (%s); the broker session expires later", topic, exc)
                return

    def _taken_over(self, exc: aiomqtt.MqttError) -> bool:
        rc = getattr(exc, "rc", None)
        code = getattr(rc, "value", rc)
        if code != SESSION_TAKEN_OVER:
            return False
        self.takeovers += 1
        now = time.monotonic()
        self._takeover_times = [t for t in self._takeover_times if now - t < TAKEOVER_WINDOW_S]
        self._takeover_times.append(now)
        if len(self._takeover_times) >= 2:
            log.error(
                "MQTT client id %s is used by another process (%d take-overs in %.0fs): give "
                "every gateway replica its own GATEWAY_REPLICA_ID, or acks will be lost",
                self._client_id,
                len(self._takeover_times),
                TAKEOVER_WINDOW_S,
            )
        return True

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
            await client.publish(
                topic, payload, qos=qos, properties=props, timeout=PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as exc:
            if "timed out" in str(exc):
                # A connection whose socket died unnoticed (no error, just no PUBACK) would
                # otherwise pass for connected until the keep-alive gives up: stop publishing
                # and retrying on it now, and connect again.
                if self._ready.is_set():
                    log.warning("MQTT publish failed (%s); connecting again", exc)
                self._ready.clear()
                self._broken.set()
            raise BusUnavailable(str(exc)) from exc


def _handoff_to(bus: MqttBus) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's queue of received messages, which hands each one to `bus` as it arrives.

    aiomqtt keeps every message (paho's, with its MQTT 5 properties: about 3 KB) until a reader
    takes it out, one task and one wait per message. When ten thousand speakers ack at once the
    event loop reads packets far faster than that, and the queue grew to tens of thousands of
    messages: over 100 MB at the peak. Handed over at once, a message costs its topic and
    payload, and the intake takes them in batches."""

    class _Handoff(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            bus._accept(item)

    return _Handoff


class FakeBus:
    """In-memory bus for unit tests: records publishes; tests put incoming messages themselves."""

    def __init__(self) -> None:
        self.incoming = FairQueue()
        self.dropped: Counter[str] = Counter()
        self.published: list[tuple[str, bytes, int, int | None]] = []
        self.up = True
        self.left = False
        self.doubt_since: datetime | None = None

    @property
    def connected(self) -> bool:
        return self.up

    @property
    def presence_doubt_since(self) -> datetime | None:
        return self.doubt_since if self.up else None

    async def leave(self) -> None:
        self.left = True

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, expiry_s: int | None = None
    ) -> None:
        if not self.up:
            raise BusUnavailable("fake bus is down")
        self.published.append((topic, payload, qos, expiry_s))
