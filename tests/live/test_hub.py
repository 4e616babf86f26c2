"""The gateway's side of a live session, in process: ticket, frames out, ending, the record."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from fastapi import WebSocketDisconnect

from gateway.auth import Principal, Role
from gateway.errors import Conflict
from gateway.live import service, upkeep
from gateway.live.fanout import FakeLiveBus
from gateway.live.hub import LiveHub
from gateway.live.models import LiveSession
from gateway.live.service import stream_of
from gateway.places.models import City
from tests.flow.conftest import Stack, stack  # noqa: F401 - the fixture
from wire import contract
from wire.contract import Category, LiveKind


class FakeSocket:
    """What the hub needs of a WebSocket: messages in from a queue, JSON out to a list."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        # As a real connection: once closed, the reader sees the disconnect.
        if self.closed is None:
            self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})
        self.closed = code

    def put(self, data: bytes | str) -> None:
        key = "bytes" if isinstance(data, bytes) else "text"
        self.incoming.put_nowait({"type": "websocket.receive", key: data})

    def kinds(self) -> list[str]:
        return [m["type"] for m in self.sent]


async def _until(check: Any, gateway: Stack) -> None:
    async with asyncio.timeout(30):
        while not check():
            await gateway.publish_pending()
            await asyncio.sleep(0.02)


async def _district(gateway: Stack) -> tuple[int, str]:
    districts = (await gateway.client.get("/api/v1/districts")).json()["items"]
    return int(districts[0]["id"]), str(districts[0]["code"])


def _pcm(seconds: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


async def test_a_session_sends_tagged_frames_to_the_group_and_keeps_its_recording(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    bus = hub._bus
    assert isinstance(bus, FakeLiveBus)
    district_id, district_code = await _district(stack)
    body = {"category": "village_notice", "district_ids": [district_id]}
    ticket = await stack.client.post("/api/v1/live/tickets", json=body)
    assert ticket.status_code == 201, ticket.text
    token = ticket.json()["ticket"]

    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, token))  # type: ignore[arg-type]
    await _until(lambda: "ready" in socket.kinds(), stack)
    started = socket.sent[0]
    assert started["type"] == "started"
    assert started["speakers"] > 0
    async with stack.app.state.sessions() as session:
        stream = await stream_of(session, started["broadcast_id"])
    assert stream is not None

    pcm = _pcm(0.4)
    for offset in range(0, len(pcm), 640):
        socket.put(pcm[offset : offset + 640])
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)
    ended = socket.sent[-1]
    assert ended["type"] == "ended"
    assert ended["reason"] == "stopped"
    assert ended["frames"] == 20

    frames = [contract.decode_live_frame(p) for _, p, _ in bus.published]
    # Once per group: the district's live topic, the broker fans out.
    assert {t for t, _, _ in bus.published} == {
        contract.live_topic_district("testcity", district_code)
    }
    audio = [f for f in frames if f.kind is LiveKind.AUDIO]
    assert [f.seq for f in audio] == list(range(20))
    assert audio[0].starts_spurt
    # A client that does not stamp its audio: its frames say no capture lag (and still play).
    assert {f.captured_ms for f in audio} == {None}
    assert all(f.verify(stream.key_bytes()) for f in frames)
    assert frames[-1].kind is LiveKind.END
    assert frames[-1].flags == contract.EndReason.STOPPED

    async with stack.app.state.sessions() as session:
        row = await session.get(LiveSession, started["broadcast_id"])
        assert row is not None
        assert (row.state, row.key, row.frames) == ("ended", None, 20)
        assert await stream_of(session, started["broadcast_id"]) is None
    recording = await stack.client.get(f"/api/v1/audio/{ended['recording_sha256']}")
    assert recording.status_code == 200
    assert recording.content.startswith(b"OggS")


async def test_tickets_are_single_use_and_a_busy_village_is_refused(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    body = {"category": "village_notice", "district_ids": [(await _district(stack))[0]]}
    token = (await stack.client.post("/api/v1/live/tickets", json=body)).json()["ticket"]
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, token))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)

    busy = await stack.client.post("/api/v1/live/tickets", json=body)
    assert busy.status_code == 409
    assert busy.json()["error"] == "live_busy"
    # A disaster alert has a higher priority: it may go on air over the village notice.
    alert = {**body, "category": "disaster"}
    assert (await stack.client.post("/api/v1/live/tickets", json=alert)).status_code == 201

    again = FakeSocket()
    await hub.serve(again, token)  # type: ignore[arg-type]
    assert again.sent[-1]["error"] == "invalid_ticket"

    socket.put(b"\x01")  # an odd byte of PCM: held until its pair comes
    socket.put('{"type": "sing"}')
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["error"] == "invalid_message"
    assert socket.closed == 1008


@pytest.mark.parametrize("fmt", ["opus", "webm"])
async def test_messages_that_are_not_audio_are_dropped_then_the_session_ends(
    stack: Stack,  # noqa: F811
    fmt: str,
) -> None:
    hub: LiveHub = stack.app.state.live
    body = {
        "category": "administrative",
        "district_ids": [(await _district(stack))[0]],
        "format": fmt,
    }
    token = (await stack.client.post("/api/v1/live/tickets", json=body)).json()["ticket"]
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, token))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    socket.put(b"\xfc" * 300_000)
    for _ in range(hub.settings.invalid_limit + 1):
        socket.put(b"RIFF\xff\xff\xff\xff" * 8)
    await asyncio.wait_for(serving, 30)
    warnings = [m["error"] for m in socket.sent if m["type"] == "warning"]
    assert warnings[0] == "frame_too_large"
    assert set(warnings[1:]) == {"not_audio"}
    assert socket.sent[-1]["error"] == "not_audio"
    assert hub.sessions_on_air == 0


# -- every way a session can end leaves the record ended and nothing behind ------------------


def _tune(hub: LiveHub, **changes: Any) -> None:
    hub._live = hub.settings.model_copy(update=changes)


async def _ticket(gateway: Stack, **extra: Any) -> str:
    body = {"category": "village_notice", "district_ids": [(await _district(gateway))[0]]}
    response = await gateway.client.post("/api/v1/live/tickets", json={**body, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


async def _row(gateway: Stack, broadcast_id: str) -> LiveSession:
    async with gateway.app.state.sessions() as session:
        row: LiveSession | None = await session.get(LiveSession, broadcast_id)
        assert row is not None
        return row


def _open_ids(bus: FakeLiveBus, kind: LiveKind) -> list[contract.LiveFrame]:
    frames = [contract.decode_live_frame(p) for _, p, _ in bus.published]
    return [f for f in frames if f.kind is kind]


class GoneSocket(FakeSocket):
    """A client that vanishes the moment the session is opened for it."""

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "started":
            raise WebSocketDisconnect(1006)


async def test_a_client_gone_before_it_hears_started_still_ends_its_session(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    _tune(hub, grace_s=0.5)
    socket = GoneSocket()
    await hub.serve(socket, await _ticket(stack))  # type: ignore[arg-type]
    broadcast_id = socket.sent[0]["broadcast_id"]
    await _until(lambda: hub.sessions_on_air == 0, stack)
    row = await _row(stack, broadcast_id)
    assert (row.state, row.end_reason, row.key) == ("ended", "client_lost", None)


async def test_ending_survives_a_database_error_and_the_client_is_told(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub: LiveHub = stack.app.state.live
    real = service.close_session
    failures = [RuntimeError("database went away")]

    async def flaky(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        await real(*args, **kwargs)

    monkeypatch.setattr(service, "close_session", flaky)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["type"] == "ended"
    assert hub.sessions_on_air == 0
    row = await _row(stack, socket.sent[0]["broadcast_id"])
    assert (row.state, row.end_reason) == ("ended", "stopped")


async def test_gateway_shutdown_ends_sessions_even_while_they_are_ending(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub: LiveHub = stack.app.state.live
    _tune(hub, grace_s=0.5)
    real = service.close_session

    async def slow(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.5)
        await real(*args, **kwargs)

    monkeypatch.setattr(service, "close_session", slow)
    vanishing, talking = FakeSocket(), FakeSocket()
    tasks = [
        asyncio.create_task(hub.serve(s, await _ticket(stack, category=c)))  # type: ignore[arg-type]
        for s, c in ((vanishing, "village_notice"), (talking, "administrative"))
    ]
    await _until(lambda: "started" in vanishing.kinds() and "started" in talking.kinds(), stack)
    vanishing.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
    # Its grace period runs out: the ending (in the background) is under way ...
    await _until(lambda: any(t.get_name().startswith("live-end") for t in hub._background), stack)
    late = await _ticket(stack, category="disaster")
    # ... when the gateway stops.
    await hub.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    # A client arriving while the gateway stops opens nothing.
    refused = FakeSocket()
    await hub.serve(refused, late)  # type: ignore[arg-type]
    assert refused.sent[-1]["error"] == "gateway_stopping"
    first = await _row(stack, vanishing.sent[0]["broadcast_id"])
    second = await _row(stack, talking.sent[0]["broadcast_id"])
    assert (first.state, first.end_reason) == ("ended", "client_lost")
    assert (second.state, second.end_reason) == ("ended", "gateway_stopped")
    assert hub.sessions_on_air == 0


async def test_pause_and_resume_toggled_fast_do_not_flood_the_speakers(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    bus = hub._bus
    assert isinstance(bus, FakeLiveBus)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    for _ in range(90):
        socket.put('{"type": "pause"}')
        socket.put('{"type": "resume"}')
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)
    # Each pause goes to every speaker at QoS 1: only a handful went out, and the session
    # itself went on to its normal end.
    assert len(_open_ids(bus, LiveKind.PAUSE)) <= 12
    assert socket.sent[-1]["type"] == "ended"
    assert socket.sent[-1]["reason"] == "stopped"


async def test_a_message_flood_is_dropped_then_ends_the_session(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    _tune(hub, flood_limit=10)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    for _ in range(400):
        socket.put(b"\x00")  # half a PCM sample: no audio, but a message to handle
    await asyncio.wait_for(serving, 30)
    assert "live_flood" in [m.get("error") for m in socket.sent if m["type"] == "warning"]
    assert socket.sent[-1]["error"] == "live_flood"
    assert hub.sessions_on_air == 0


async def test_a_huge_text_message_is_refused_clearly(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    socket.put('{"type": "stop", "pad": "' + "x" * 100_000 + '"}')
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["error"] == "invalid_message"
    assert "/" in socket.sent[-1]["detail"]  # Korean / English
    assert (await _row(stack, socket.sent[0]["broadcast_id"])).state == "ended"


async def test_a_client_that_never_speaks_is_ended_before_the_speakers_give_up(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    _tune(hub, idle_s=1)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["type"] == "ended"
    assert socket.sent[-1]["reason"] == "idle"
    row = await _row(stack, socket.sent[0]["broadcast_id"])
    assert (row.state, row.end_reason) == ("ended", "idle")


async def test_silence_after_talk_pauses_the_speakers_then_ends_the_session(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    _tune(hub, stall_ms=400, idle_s=2)
    bus = hub._bus
    assert isinstance(bus, FakeLiveBus)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    socket.put(_pcm(0.1))
    await _until(lambda: _open_ids(bus, LiveKind.PAUSE) != [], stack)
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["reason"] == "idle"
    end = _open_ids(bus, LiveKind.END)[-1]
    assert end.flags == contract.EndReason.STOPPED  # what was said was played


async def test_the_start_never_published_ends_the_session_with_an_error(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upkeep, "_START_TIMEOUT_S", 0.3)
    hub: LiveHub = stack.app.state.live
    socket = FakeSocket()
    # Nothing drives the outbox here: the start command stays pending.
    await asyncio.wait_for(hub.serve(socket, await _ticket(stack)), 30)  # type: ignore[arg-type]
    assert "live_not_started" in [m.get("error") for m in socket.sent]
    row = await _row(stack, socket.sent[0]["broadcast_id"])
    assert (row.state, row.end_reason) == ("ended", "live_not_started")


async def test_two_openings_racing_for_one_village_put_only_one_on_air(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    # Both tickets are issued while the village is free; they are used at the same moment.
    tokens = [await _ticket(stack), await _ticket(stack)]
    sockets = [FakeSocket(), FakeSocket()]
    tasks = [
        asyncio.create_task(hub.serve(s, t))  # type: ignore[arg-type]
        for s, t in zip(sockets, tokens, strict=True)
    ]
    await _until(lambda: all(s.sent for s in sockets), stack)
    firsts = sorted(s.sent[0].get("error") or s.sent[0]["type"] for s in sockets)
    assert firsts == ["live_busy", "started"]
    for s in sockets:
        s.put('{"type": "stop"}')
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_sessions_of_a_dead_replica_are_ended_by_the_others(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    broadcast_id = socket.sent[0]["broadcast_id"]
    city_id = stack.app.state.city_id
    stack.clock.advance(60)  # nobody renewed it for a minute
    async with stack.app.state.sessions() as session:
        # Its own replica is alive and keeps it ...
        assert (
            await service.close_stale(session, city_id, stack.clock.now(), keep={broadcast_id}) == 0
        )
        # ... any other replica sees a session nobody renews, and ends it.
        assert await service.close_stale(session, city_id, stack.clock.now(), keep=set()) == 1
        await session.commit()
    async with stack.app.state.sessions() as session:
        renewed = await service.keep_alive(
            session, broadcast_id, stack.clock.now(), frames=0, dropped=0
        )
    assert not renewed  # so the replica that still holds it learns it was ended
    row = await _row(stack, broadcast_id)
    assert (row.state, row.end_reason, row.key) == ("ended", "replica_lost", None)
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)


async def test_unused_tickets_per_person_are_limited(
    stack: Stack,  # noqa: F811
) -> None:
    body = {"category": "village_notice", "district_ids": [(await _district(stack))[0]]}
    codes = [
        (await stack.client.post("/api/v1/live/tickets", json=body)).status_code for _ in range(6)
    ]
    assert codes == [201] * 5 + [429]
    refused = await stack.client.post("/api/v1/live/tickets", json=body)
    assert refused.json()["error"] == "too_many_tickets"


async def test_a_ticket_is_spent_before_the_connection_is_accepted(
    stack: Stack,  # noqa: F811
) -> None:
    # The server logs the accepted path with its query: the ticket there must be worthless.
    hub: LiveHub = stack.app.state.live
    token = await _ticket(stack)
    seen: list[bool] = []

    class Watching(FakeSocket):
        async def accept(self) -> None:
            seen.append(token in hub._tickets)

    socket = Watching()
    serving = asyncio.create_task(hub.serve(socket, token))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)
    assert seen == [False]
    refused = Watching()
    await hub.serve(refused, token)  # type: ignore[arg-type]
    assert refused.sent[-1]["error"] == "invalid_ticket"
    assert refused.closed == 1008


# PostgreSQL only: on SQLite a gateway is one process, whose hub serializes its openings itself.
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_openings_on_two_replicas_are_serialized_by_the_database(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    runtime = stack.app.state.runtime
    chime = await hub._chime("village_notice")
    request = service.LiveRequest(
        category=Category.VILLAGE_NOTICE,
        title=None,
        all_villages=False,
        district_ids=((await _district(stack))[0],),
        village_ids=(),
        principal=Principal(name="bootstrap", role=Role.CITY_ADMIN),
    )

    async def open_as_another_replica() -> str:
        # Each in its own transaction, as two replicas would, without the hub's lock.
        async with stack.app.state.sessions() as session:
            city = await session.get(City, stack.app.state.city_id)
            try:
                opened = await service.open_session(
                    session, runtime, city, request, hub.settings, chime=chime, input_format="pcm"
                )
            except Conflict as exc:
                return exc.code
            await asyncio.sleep(0.2)  # the other one checks meanwhile
            await session.commit()
            return opened.broadcast_id

    outcomes = await asyncio.gather(open_as_another_replica(), open_as_another_replica())
    assert sorted(len(o) for o in outcomes) == [len("live_busy"), 32]
    assert "live_busy" in outcomes


@pytest.mark.parametrize("refused", ["live_flood", "not_audio"])
async def test_a_session_refused_before_its_start_went_out_plays_nowhere(
    stack: Stack,  # noqa: F811
    refused: str,
) -> None:
    """The client is refused before the outbox publishes the start command: that command does
    not go out later as an ordinary broadcast of the chime or of what the client sent (a live
    talk is heard now or not at all), and the board shows nothing played."""
    hub: LiveHub = stack.app.state.live
    _tune(hub, flood_limit=10, invalid_limit=3)
    stack.bus.up = False  # the outbox cannot publish the start command yet
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, await _ticket(stack)))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    if refused == "live_flood":
        pcm = _pcm(3.0)
        for offset in range(0, len(pcm), 8000):  # 250 ms a message, all at once
            socket.put(pcm[offset : offset + 8000])
    else:
        for _ in range(4):
            socket.put(b"\x00" * 30_000)  # larger than any PCM message
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["error"] == refused
    broadcast_id = socket.sent[0]["broadcast_id"]

    stack.bus.up = True
    await stack.publish_pending()
    sent = [contract.decode_command(payload) for _, payload, _, _ in stack.bus.published]
    assert [c for c in sent if c.broadcast_id == broadcast_id] == []
    stack.clock.advance(60)
    await stack.app.state.sweeper.sweep_once()
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert detail["speakers"]["played"] == 0
    assert detail["speakers"]["expired"] == detail["speakers"]["total"] > 0
