"""The speakers service the broadcast, intake and sweeper code builds on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.speakers import presence
from gateway.speakers import service as speakers
from gateway.speakers.models import Speaker
from tests.gateway.conftest import World

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def _update(
    code: str,
    status: Literal["online", "heartbeat", "offline"],
    at: datetime = T0,
    codecs: tuple[str, ...] | None = None,
    firmware: str | None = None,
) -> presence.PresenceUpdate:
    return presence.PresenceUpdate(
        code=code, status=status, at=at, codecs=codecs, firmware=firmware
    )


async def _apply(sessions: Sessions, world: World, *updates: presence.PresenceUpdate) -> list[int]:
    async with sessions() as session:
        came = await presence.apply_presence(session, world.city_id, updates)
        await session.commit()
    return came


async def _state(sessions: Sessions, speaker_id: int) -> Speaker:
    async with sessions() as session:
        speaker = await session.get_one(Speaker, speaker_id)
        session.expunge(speaker)
        return speaker


@contextmanager
def _statements(sessions: Sessions) -> Iterator[list[str]]:
    engine = sessions.kw["bind"].sync_engine
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_speakers_of_the_whole_city(db_sessions: Sessions, world: World) -> None:
    async with db_sessions() as session:
        found = await speakers.speakers_for(session, world.city_id, village_ids=None)
    s = world.speakers
    assert [t.code for t in found] == ["a1-s1", "a1-s2", "a2-s1", "b1-s1"]
    assert found[0] == speakers.TargetSpeaker(
        id=s["a1-s1"],
        code="a1-s1",
        village_id=world.villages["a1"],
        district_id=world.districts["a"],
        codecs=("opus", "mp3"),
        online=False,
    )
    assert found[3].codecs == ("mp3",)


async def test_speakers_of_some_villages(
    db_sessions: Sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speakers, "IN_CHUNK", 1)
    v = world.villages
    async with db_sessions() as session:
        found = await speakers.speakers_for(
            session, world.city_id, village_ids=[v["b1"], v["a1"], v["b2"], v["x1"]]
        )
        none = await speakers.speakers_for(session, world.city_id, village_ids=[])
    assert [t.code for t in found] == ["a1-s1", "a1-s2", "b1-s1"], "ordered by id, own city only"
    assert none == []


async def test_ids_by_code(db_sessions: Sessions, world: World) -> None:
    async with db_sessions() as session:
        ids = await speakers.speaker_ids_by_code(
            session, world.city_id, {"a1-s1", "b1-s1", "x1-s1", "nope"}
        )
    assert ids == {"a1-s1": world.speakers["a1-s1"], "b1-s1": world.speakers["b1-s1"]}


async def test_birth_brings_a_speaker_online_once(db_sessions: Sessions, world: World) -> None:
    sid = world.speakers["a1-s1"]
    came = await _apply(
        db_sessions, world, _update("a1-s1", "online", T0, codecs=("mp3",), firmware="2.0.1")
    )
    assert came == [sid]
    speaker = await _state(db_sessions, sid)
    assert speaker.online
    assert speaker.last_seen_at == T0
    assert speaker.codecs == ["mp3"]
    assert speaker.firmware == "2.0.1"

    later = T0 + timedelta(seconds=30)
    assert await _apply(db_sessions, world, _update("a1-s1", "heartbeat", later)) == []
    assert await _apply(db_sessions, world, _update("a1-s1", "online", later)) == []
    speaker = await _state(db_sessions, sid)
    assert speaker.last_seen_at == later
    assert speaker.codecs == ["mp3"], "a birth without codecs keeps the declared ones"
    assert speaker.firmware == "2.0.1"


async def test_last_seen_never_moves_backwards(db_sessions: Sessions, world: World) -> None:
    sid = world.speakers["a2-s1"]
    await _apply(db_sessions, world, _update("a2-s1", "online", T0 + timedelta(minutes=5)))
    await _apply(db_sessions, world, _update("a2-s1", "heartbeat", T0))
    assert (await _state(db_sessions, sid)).last_seen_at == T0 + timedelta(minutes=5)


async def test_a_heartbeat_from_an_offline_speaker_counts_as_coming_online(
    db_sessions: Sessions, world: World
) -> None:
    assert await _apply(db_sessions, world, _update("b1-s1", "heartbeat")) == [
        world.speakers["b1-s1"]
    ]


async def test_will_takes_a_speaker_offline(db_sessions: Sessions, world: World) -> None:
    sid = world.speakers["a1-s2"]
    await _apply(db_sessions, world, _update("a1-s2", "online", T0))
    # A will carries the time its connection began: older than the last heartbeat.
    await _apply(db_sessions, world, _update("a1-s2", "offline", T0 - timedelta(hours=1)))
    speaker = await _state(db_sessions, sid)
    assert not speaker.online
    assert speaker.last_seen_at == T0


async def test_the_last_message_in_a_batch_decides(db_sessions: Sessions, world: World) -> None:
    s = world.speakers
    came = await _apply(
        db_sessions,
        world,
        _update("a1-s1", "online", T0),
        _update("a1-s1", "offline", T0 - timedelta(hours=1)),
        _update("a1-s2", "offline", T0 - timedelta(hours=1)),
        _update("a1-s2", "online", T0),
        _update("a1-s2", "heartbeat", T0 + timedelta(seconds=1)),
    )
    assert came == [s["a1-s2"]]
    first, second = await _state(db_sessions, s["a1-s1"]), await _state(db_sessions, s["a1-s2"])
    assert not first.online
    assert first.last_seen_at == T0, "it was still heard from before its will"
    assert second.online
    assert second.last_seen_at == T0 + timedelta(seconds=1)


async def test_unknown_and_foreign_speakers_are_ignored(
    db_sessions: Sessions, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=presence.__name__):
        came = await _apply(
            db_sessions,
            world,
            _update("ghost", "online"),
            _update("x1-s1", "online"),
            _update("a2-s1", "online"),
        )
    assert came == [world.speakers["a2-s1"]]
    assert not (await _state(db_sessions, world.speakers["x1-s1"])).online
    assert "2 unknown speakers" in caplog.text


async def test_a_batch_costs_the_same_few_statements_whatever_its_size(
    db_sessions: Sessions, world: World
) -> None:
    codes = ["a1-s1", "a1-s2", "a2-s1", "b1-s1"]

    async def statements_for(updates: list[presence.PresenceUpdate]) -> int:
        with _statements(db_sessions) as seen:
            await _apply(db_sessions, world, *updates)
        return len([s for s in seen if s.lstrip().upper().startswith(("SELECT", "UPDATE"))])

    one = await statements_for([_update("a1-s1", "online", T0, codecs=("opus",))])
    many = await statements_for(
        [_update(c, "online", T0 + timedelta(seconds=1), codecs=("opus",)) for c in codes]
        + [_update(c, "heartbeat", T0 + timedelta(seconds=2)) for c in codes]
    )
    assert 0 < many == one


async def test_silent_speakers_go_offline(db_sessions: Sessions, world: World) -> None:
    s = world.speakers
    await _apply(
        db_sessions,
        world,
        _update("a1-s1", "online", T0),
        _update("a1-s2", "online", T0 + timedelta(seconds=100)),
    )
    async with db_sessions() as session:
        other = await session.get_one(Speaker, s["x1-s1"])
        other.online, other.last_seen_at = True, T0
        await session.commit()
    async with db_sessions() as session:
        silent = await presence.mark_silent_offline(
            session, world.city_id, older_than=T0 + timedelta(seconds=90)
        )
        again = await presence.mark_silent_offline(
            session, world.city_id, older_than=T0 + timedelta(seconds=90)
        )
        await session.commit()
    assert silent == [s["a1-s1"]]
    assert again == []
    async with db_sessions() as session:
        online = set(await session.scalars(select(Speaker.code).where(Speaker.online.is_(True))))
    assert online == {"a1-s2", "x1-s1"}, "the other city is not touched"


async def test_tallies_per_village_and_district(db_sessions: Sessions, world: World) -> None:
    await _apply(db_sessions, world, _update("a1-s1", "online"))
    v, d = world.villages, world.districts
    async with db_sessions() as session:
        by_village = await speakers.tally(session, world.city_id, by="village")
        by_district = await speakers.tally(
            session, world.city_id, by="district", ids=[d["a"], d["c"]]
        )
        city = await speakers.tally_city(session, world.city_id)
    assert by_village == {
        v["a1"]: speakers.SpeakerTally(2, 1),
        v["a2"]: speakers.SpeakerTally(1, 0),
        v["b1"]: speakers.SpeakerTally(1, 0),
    }
    assert by_district == {d["a"]: speakers.SpeakerTally(3, 1)}
    assert city == speakers.SpeakerTally(4, 1)
