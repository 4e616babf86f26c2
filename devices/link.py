"""A speaker's MQTT 5 connection: session, subscriptions, presence (birth, heartbeat, will), acks.

Shared by the simulated fleet and the device agent. paho-mqtt's client is driven straight from
the asyncio loop (socket readiness through add_reader/add_writer, as aiomqtt does), but with no
task per connection: one `Hub` per process bounds concurrent handshakes and ticks every
connection's keep-alive and heartbeat, so one process holds ten thousand speakers. The TCP
connect and the TLS handshake are done here without blocking the loop and handed to paho,
because paho's own connect blocks, and binds to port 0 before connecting, which the kernel
answers more slowly the more connections are open (seconds per thousand at 10,000). The hub
and the socket work are in `devices.hub`; the broker address and the settings in
`devices.link_settings`.

Each speaker keeps one client id (``spk-<speaker>``) and connects with clean_start false and a
session expiry, so the broker keeps its subscriptions and queues its QoS 1 commands while it is
briefly away. Its will, retained, says ``offline``; its birth, retained, says ``online``.

Exceptions::

    LinkError       a connection attempt failed: refused, timed out, or closed before ready
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import secrets
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.hub import Hub
from devices.link_settings import LinkSettings
from wire import contract
from wire.contract import Codec

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S: Final = 5.0


class LinkError(Exception):
    """A connection attempt failed: refused, timed out, or closed before it was ready."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message on one of the speaker's command topics."""

    topic: str
    payload: bytes = field(repr=False)
    mid: int
    qos: int
    generation: int  # which connection brought it (a PUBACK only goes back on that one)


class _State(enum.Enum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"
    CLOSING = "closing"


class _Client(mqtt.Client):
    """paho's client, connecting over a socket the link opened without blocking the loop."""

    prepared: socket.socket | None = None

    def _create_socket(self) -> socket.socket:
        sock, self.prepared = self.prepared, None
        if sock is None:
            raise ConnectionError("no socket was prepared for this connection attempt")
        return sock


_PresenceStatus = Literal["online", "heartbeat", "offline"]


# Packets read from one link in one go before other work runs (see Link._on_readable).
_READS_PER_WAKE: Final = 256


def _readable_now(sock: Any) -> bool:
    """Bytes wait on the socket now (without blocking)."""
    if sock.fileno() < 0:
        return False
    # poll, not select: a fleet holds thousands of sockets, past select's FD_SETSIZE.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class Link:
    """One speaker's connection. It stays up on its own once `connect` or `start` is called:
    a lost connection is retried with jittered exponential back-off until `close`."""

    def __init__(
        self,
        hub: Hub,
        settings: LinkSettings,
        identity: contract.SpeakerIdentity,
        *,
        on_message: Callable[[Incoming], None],
        codecs: Iterable[Codec | str] = (),
        manual_ack: bool = False,
        boot_id: str | None = None,
        live: bool = False,
        clock_offset: Callable[[], int | None] | None = None,
    ) -> None:
        self.identity = identity
        self._clock_offset = clock_offset
        self.wanted = False
        self.generation = 0
        self.connects = 0
        self.last_error: str | None = None
        self._hub = hub
        self._settings = settings
        self._handler = on_message
        self._codecs = tuple(Codec(c) for c in codecs)
        self._boot_id = boot_id or secrets.token_hex(8)
        self._ack_topic = contract.ack_topic(identity.city, identity.speaker)
        self._presence_topic = contract.presence_topic(identity.city, identity.speaker)
        self._subscriptions = [(t, int(contract.COMMAND_QOS)) for t in identity.subscriptions()]
        if live:  # live-stream frames come to the same handler (see contract.is_live_topic)
            self._subscriptions += [
                (t, int(contract.LIVE_SUBSCRIPTION_QOS))
                for t in contract.live_subscriptions(
                    identity.city, identity.district, identity.village
                )
            ]
        self._state = _State.OFFLINE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._step: asyncio.Future[Any] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._attempt: asyncio.Task[bool] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0
        self._next_heartbeat = 0.0
        self._client = self._make_client(manual_ack)

    def _make_client(self, manual_ack: bool) -> _Client:
        settings = self._settings
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=contract.speaker_client_id(self.identity.speaker),
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        client.max_inflight_messages_set(settings.max_inflight)
        username = settings.username or settings.broker.username
        if username is not None:
            client.username_pw_set(username, settings.password or settings.broker.password)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.session_expiry_s
        props.ReceiveMaximum = settings.max_inflight
        client.connect_async(
            settings.broker.host,
            settings.broker.port,
            settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    @property
    def online(self) -> bool:
        return self._state is _State.ONLINE

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Bring the link up now. True when online; on failure it keeps retrying by itself."""
        self.wanted = True
        if self._state is _State.ONLINE:
            return True
        if self._attempt is None or self._attempt.done():
            self._cancel_retry()
            self._attempt = self._hub.spawn(
                self._run_attempt(), name=f"link-{self.identity.speaker}"
            )
        return bool(await asyncio.shield(self._attempt))

    def start(self) -> None:
        """Like `connect`, without waiting."""
        self.wanted = True
        busy = self._attempt is not None and not self._attempt.done()
        if self._state is _State.OFFLINE and not busy and self._retry is None:
            self._attempt = self._hub.spawn(
                self._run_attempt(), name=f"link-{self.identity.speaker}"
            )

    def drop(self) -> None:
        """Lose the connection as a network fault would (no DISCONNECT: the broker publishes the
        will); the link reconnects by itself."""
        self._hard_close()

    async def go_offline(self) -> None:
        """Lose the connection as a power cut would, and stay away until `connect`."""
        self.wanted = False
        await self._stop_trying()
        if self._state is _State.ONLINE:
            closed = self._closed_future()
            self._hard_close()
            await self._wait_closed(closed)

    async def close(self) -> None:
        """Leave for good: DISCONNECT asking the broker to publish the will (``offline``)."""
        self.wanted = False
        await self._stop_trying()
        if self._state is not _State.ONLINE:
            return
        self._state = _State.CLOSING
        self._hub.remove_online(self)
        closed = self._closed_future()
        reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        if self._client.disconnect(reasoncode=reason) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._hard_close()
        await self._wait_closed(closed)
        self._state = _State.OFFLINE

    # -- sending ---------------------------------------------------------------------------

    def publish_ack(self, ack: contract.Ack) -> None:
        """Queue an ack (QoS 1). Sent now, or after the next reconnect if offline."""
        self._client.publish(self._ack_topic, contract.encode_ack(ack), qos=int(contract.ACK_QOS))

    def acknowledge(self, incoming: Incoming) -> None:
        """PUBACK a command (manual_ack links): call once it is safely journaled."""
        live = self._state in (_State.CONNECTING, _State.ONLINE)
        if incoming.qos and incoming.generation == self.generation and live:
            self._client.ack(incoming.mid, incoming.qos)

    def _publish_presence(self, status: _PresenceStatus, *, qos: int, retain: bool) -> None:
        self._client.publish(self._presence_topic, self._presence(status), qos=qos, retain=retain)

    def _presence(self, status: _PresenceStatus, *, session_present: bool | None = None) -> bytes:
        return contract.encode_presence(
            contract.Presence(
                speaker=self.identity.speaker,
                status=status,
                at_ms=contract.now_ms(),
                codecs=self._codecs,
                firmware=self._settings.firmware,
                boot_id=self._boot_id,
                session_present=session_present,
                clock_offset_ms=self._clock_offset() if self._clock_offset else None,
            )
        )

    # -- connecting ------------------------------------------------------------------------

    async def _run_attempt(self) -> bool:
        try:
            await self._attempt_once()
        except LinkError as exc:
            self._failures += 1
            self.last_error = str(exc)
            log.debug("speaker %s: connection failed: %s", self.identity.speaker, exc)
            if self.wanted:
                self._schedule_retry()
            return False
        return True

    async def _attempt_once(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        settings = self._settings
        async with self._hub.slots:
            if not self.wanted:
                raise LinkError("no longer wanted")
            self._state = _State.CONNECTING
            try:
                async with asyncio.timeout(settings.connect_timeout_s):
                    sock = await self._hub.open_socket(settings)
                    self._step = loop.create_future()
                    self._client.prepared = sock
                    self._client.will_set(
                        self._presence_topic,
                        self._presence("offline"),
                        qos=int(contract.PRESENCE_QOS),
                        retain=True,
                    )
                    self._client.reconnect()
                    session_present = bool(await self._step)
                    # A resumed session delivers its queued commands right after CONNACK,
                    # before SUBACK: they belong to this connection already.
                    self.generation += 1
                    self._step = loop.create_future()
                    self._client.subscribe(self._subscriptions)
                    await self._step
            except BaseException as exc:
                self._fail_attempt()
                if isinstance(exc, OSError | TimeoutError | LinkError | ValueError):
                    raise LinkError(str(exc) or type(exc).__name__) from exc
                raise
            self._step = None
        self.connects += 1
        self._failures = 0
        self.last_error = None
        self._state = _State.ONLINE
        # The birth says whether the broker kept the session: if it did, the commands queued
        # in it are arriving now, and the gateway gives them a moment before catching up.
        self._client.publish(
            self._presence_topic,
            self._presence("online", session_present=session_present),
            qos=int(contract.PRESENCE_QOS),
            retain=True,
        )
        self._next_heartbeat = time.monotonic() + settings.heartbeat_s
        self._hub.add_online(self)

    def _fail_attempt(self) -> None:
        self._step = None
        self._state = _State.OFFLINE
        leftover, self._client.prepared = self._client.prepared, None
        if leftover is not None:
            leftover.close()
        self._hard_close()

    def _schedule_retry(self) -> None:
        settings = self._settings
        delay = min(
            settings.backoff_max_s, settings.backoff_initial_s * 2 ** min(self._failures, 20)
        )
        delay *= random.uniform(0.5, 1.5)
        loop = self._loop or asyncio.get_running_loop()
        self._cancel_retry()
        self._retry = loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if self.wanted and self._state is _State.OFFLINE:
            self._attempt = self._hub.spawn(
                self._run_attempt(), name=f"link-{self.identity.speaker}"
            )

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    async def _stop_trying(self) -> None:
        self._cancel_retry()
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt

    def _closed_future(self) -> asyncio.Future[None]:
        self._closed = asyncio.get_running_loop().create_future()
        return self._closed

    async def _wait_closed(self, closed: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(closed), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._hard_close()

    def _hard_close(self) -> None:
        # Shut the socket down under paho: its next read sees the end of the stream, closes
        # the socket and reports the disconnection like any other.
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def hub_tick(self, now: float) -> None:
        """The hub's tick while this link is online: paho's keep-alive, then the heartbeat."""
        if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._settings.heartbeat_s
            self._publish_presence("heartbeat", qos=int(contract.HEARTBEAT_QOS), retain=False)

    # -- paho callbacks (all on the loop's thread) -----------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        step = self._step
        if step is None or step.done():
            return
        if reason.is_failure:
            step.set_exception(LinkError(f"the broker refused the connection: {reason}"))
        else:
            step.set_result(flags.session_present)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [
            topic
            for (topic, _), code in zip(self._subscriptions, reasons, strict=False)
            if code.is_failure
        ]
        if refused:
            # Still useful on the topics it got; the broker's ACL decides the rest.
            log.warning("speaker %s: subscriptions refused: %s", self.identity.speaker, refused)
        step = self._step
        if step is not None and not step.done():
            step.set_result(None)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._hub.remove_online(self)
        step = self._step
        if step is not None and not step.done():
            step.set_exception(LinkError(f"the connection closed: {reason}"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._state in (_State.ONLINE, _State.CLOSING):
            lost = self._state is _State.ONLINE
            self._state = _State.OFFLINE
            if lost:
                log.info("speaker %s: connection lost (%s)", self.identity.speaker, reason)
                if self.wanted:
                    self._schedule_retry()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handler(
                Incoming(
                    message.topic, bytes(message.payload), message.mid, message.qos, self.generation
                )
            )
        except Exception:
            log.exception("speaker %s: command handler failed", self.identity.speaker)

    def _on_readable(self) -> None:
        client = self._client
        try:
            # paho reads one packet per call. Every packet already here is read before the loop
            # runs anything else (the handlers only queue work), so a speaker waking up with a
            # backlog sees a cancel or a resend queued behind a command before that command
            # can start playing. Bounded, so one busy link cannot hold up the others for long.
            for _ in range(_READS_PER_WAKE):
                client.loop_read()
                sock = client.socket()
                # TLS may hold decrypted bytes the socket no longer signals (paho issue #131).
                if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                    continue
                if sock is None or not _readable_now(sock):
                    break
        except Exception:
            log.exception("speaker %s: reading from the broker failed", self.identity.speaker)
            self._hard_close()

    def _on_writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception:
            log.exception("speaker %s: writing to the broker failed", self.identity.speaker)
            self._hard_close()

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.add_writer(sock.fileno(), self._on_writable)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._loop is not None:
            self._loop.remove_writer(fd)
