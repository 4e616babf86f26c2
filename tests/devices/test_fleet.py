"""The simulated fleet against a real broker: acks per speaker, offline speakers, persistent
sessions, republished commands, cancel, faults and presence."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator

import pytest

from devices.simulator import Fleet, FleetError, run_fleet
from devices.simulator_config import SIMULATED_REJECT_REASON, FleetConfig, SimSpeaker, choose_faults
from tests.devices.commands import audio, cancel_of, command, new_keys, opus_clip
from tests.devices.observer import Observer
from tests.support.net import free_port
from wire import contract

STEPS = ("received", "playing", "played")
FINAL = ("played", "failed", "rejected")


@pytest.fixture(scope="module")
def clip() -> bytes:
    return opus_clip(0.5)


@pytest.fixture
def city() -> str:
    return f"c{secrets.token_hex(3)}"


@pytest.fixture
async def observer(mqtt_url: str, city: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, city) as watching:
        yield watching


def specs(city: str, count: int, *, villages: int = 2) -> list[SimSpeaker]:
    # Speaker ids are unique per test: the broker keeps sessions by client id.
    return [
        SimSpeaker(
            contract.SpeakerIdentity(
                city=city, district="d1", village=f"v{i % villages}", speaker=f"{city}-s{i:02d}"
            )
        )
        for i in range(count)
    ]


def play(city: str, clip: bytes, **fields: object) -> contract.Command:
    return command(city=city, at_ms=contract.now_ms(), refs=(audio(clip),), **fields)  # type: ignore[arg-type]


async def settle(observer: Observer, fleet: Fleet, city: str, clip: bytes) -> None:
    """Wait until every online speaker has played one more command: acks on one speaker's
    topic arrive in order, so any duplicate sent before it is in by then."""
    marker = play(city, clip)
    await observer.publish(contract.command_topic_all(city), marker)
    online = {s.id for s in fleet if s.online}
    await observer.until(
        lambda: {a.speaker for a in observer.of(marker.id) if a.status in FINAL} >= online
    )


async def test_a_signed_group_command_is_played_once_by_each_online_speaker(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    keys = new_keys()
    config = FleetConfig(
        mqtt_url=mqtt_url,
        speed=50,
        offline_ratio=0.2,
        seed=7,
        public_keys={keys.key_id: keys.public},
        session_expiry_s=60,
    )
    fleet = Fleet(config)
    seen: list[tuple[int, int]] = []
    await fleet.start(specs(city, 20), progress=lambda done, total: seen.append((done, total)))
    try:
        assert len(fleet.offline_ids) == 4
        online = {s.id for s in fleet if s.online}
        assert len(online) == 16
        assert online.isdisjoint(fleet.offline_ids)
        assert seen[0] == (0, 16)
        assert seen[-1] == (16, 16)

        unsigned = play(city, clip)
        await observer.publish(contract.command_topic_all(city), unsigned)
        await observer.until(lambda: observer.speakers_with(unsigned.id, "rejected") == online)
        assert {a.reason for a in observer.of(unsigned.id)} == {"unsigned"}

        signed = keys.sign(play(city, clip, scope=contract.Scope(kind="village", ids=("v0",))))
        await observer.publish(contract.command_topic_village(city, "v0"), signed)
        in_v0 = {s.id for s in fleet if s.online and s.spec.identity.village == "v0"}
        await observer.until(lambda: observer.speakers_with(signed.id, "played") == in_v0)
        marker = keys.sign(play(city, clip))
        await observer.publish(contract.command_topic_all(city), marker)
        await observer.until(lambda: observer.speakers_with(marker.id, "played") == online)

        counts = observer.counts(signed.id)
        assert counts == {(speaker, step): 1 for speaker in in_v0 for step in STEPS}
        assert not {a.speaker for a in observer.acks} & fleet.offline_ids
        played = next(a for a in observer.of(signed.id) if a.status == "played")
        assert played.audio_sha256 == signed.audio[0].sha256
        assert played.played_ms is not None
        assert played.played_ms > 0
        assert played.level_dbfs is not None
        assert played.level_dbfs < 0
        assert fleet.stats().decodes == 1  # one clip, decoded once for the whole fleet
    finally:
        await fleet.stop()


async def test_a_speaker_back_online_plays_what_the_broker_kept_for_it(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, speed=50, session_expiry_s=60))
    await fleet.start(specs(city, 3))
    try:
        away = fleet.speaker(f"{city}-s01")
        await observer.watch_presence([away.id])
        await observer.until(lambda: observer.last_presence(away.id) == "online")
        await away.go_offline()
        assert away.id in fleet.offline_ids
        await observer.until(lambda: observer.last_presence(away.id) == "offline")  # its will

        cmd = play(city, clip, scope=contract.Scope(kind="speaker", ids=(away.id,)))
        await observer.publish(contract.command_topic_speaker(city, away.id), cmd)
        await observer.publish(contract.command_topic_all(city), play(city, clip))
        assert await away.go_online()
        await observer.until(lambda: away.id in observer.speakers_with(cmd.id, "played"))
        await settle(observer, fleet, city, clip)
        assert observer.counts(cmd.id) == {(away.id, step): 1 for step in STEPS}
        assert observer.last_presence(away.id) == "online"
        assert away.played == 3  # the kept command, the group command, the marker
    finally:
        await fleet.stop()


async def test_a_republished_command_id_is_not_played_twice(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, speed=50, session_expiry_s=60))
    await fleet.start(specs(city, 5))
    try:
        cmd = play(city, clip)
        everyone = {s.id for s in fleet}
        await observer.publish(contract.command_topic_all(city), cmd)
        await observer.until(lambda: observer.speakers_with(cmd.id, "played") == everyone)
        again = cmd.model_copy(update={"nonce": contract.new_nonce()})  # a retry
        await observer.publish(contract.command_topic_all(city), again)
        for speaker in everyone:  # and a catch-up on each speaker's own topic, signed afresh
            catch_up = cmd.model_copy(update={"nonce": contract.new_nonce()})
            await observer.publish(contract.command_topic_speaker(city, speaker), catch_up)
        await settle(observer, fleet, city, clip)
        counts = observer.counts(cmd.id)
        for speaker in everyone:
            assert counts[(speaker, "received")] == 1
            assert counts[(speaker, "playing")] == 1  # it started once
            assert counts[(speaker, "played")] == 3  # then answered the two copies
            assert fleet.speaker(speaker).played == 2  # this command and the marker
        assert fleet.stats().duplicates == 10
    finally:
        await fleet.stop()


async def test_cancel_reaches_the_audio_that_is_playing(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    # Speed 0.02: the half-second clip "plays" for 25 s, long enough to be cancelled.
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, speed=0.02, session_expiry_s=60))
    await fleet.start(specs(city, 4))
    try:
        cmd = play(city, clip)
        everyone = {s.id for s in fleet}
        await observer.publish(contract.command_topic_all(city), cmd)
        await observer.until(lambda: observer.speakers_with(cmd.id, "playing") == everyone)
        cancel = cancel_of(cmd, at_ms=contract.now_ms())
        await observer.publish(contract.command_topic_all(city), cancel)
        await observer.until(lambda: observer.speakers_with(cmd.id, "failed") == everyone)
        assert {a.reason for a in observer.of(cmd.id) if a.status == "failed"} == {"cancelled"}
        assert observer.speakers_with(cmd.id, "played") == set()
        assert all(s.core.playing is None for s in fleet)
    finally:
        await fleet.stop()


async def test_faulty_speakers_reject_ack_late_or_drop_and_still_ack_once(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    config = FleetConfig(
        mqtt_url=mqtt_url,
        speed=1,
        reject_ratio=0.2,
        slow_ack_ratio=0.2,
        slow_ack_s=0.3,
        drop_mid_play_ratio=0.3,
        seed=3,
        session_expiry_s=60,
    )
    fleet = Fleet(config)
    await fleet.start(specs(city, 10))
    try:
        rejecting = {s.id for s in fleet if s.faults.reject}
        dropping = {s.id for s in fleet if s.faults.drop_mid_play and not s.faults.reject}
        playing = {s.id for s in fleet} - rejecting
        assert len(rejecting) == 2
        assert dropping
        cmd = play(city, clip)
        await observer.publish(contract.command_topic_all(city), cmd)
        await observer.until(
            lambda: (
                observer.speakers_with(cmd.id, "played") == playing
                and observer.speakers_with(cmd.id, "rejected") == rejecting
            )
        )
        await observer.until(lambda: all(s.online for s in fleet))
        await settle(observer, fleet, city, clip)
        counts = observer.counts(cmd.id)
        assert counts == {
            **{(s, step): 1 for s in playing for step in STEPS},
            **{(s, "rejected"): 1 for s in rejecting},
        }
        assert {a.reason for a in observer.of(cmd.id) if a.speaker in rejecting} == {
            SIMULATED_REJECT_REASON
        }
        assert all(fleet.speaker(s).link.connects >= 2 for s in dropping)  # they came back
    finally:
        await fleet.stop()


async def test_presence_birth_heartbeat_and_will(
    mqtt_url: str, city: str, observer: Observer
) -> None:
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, heartbeat_s=0.2, session_expiry_s=60))
    speakers = specs(city, 2)
    ids = [s.identity.speaker for s in speakers]
    await fleet.start(speakers)
    try:
        await observer.watch_presence(ids)
        await observer.until(
            lambda: all(
                any(
                    s == i and p is not None and p.status == "heartbeat"
                    for s, p, _ in observer.presence
                )
                for i in ids
            )
        )
        birth = next(p for s, p, retained in observer.presence if retained and p is not None)
        assert birth.status == "online"
        assert set(birth.codecs) == {"opus", "mp3"}
    finally:
        await fleet.stop()
    async with Observer(mqtt_url, city) as later:
        await later.watch_presence(ids)
        await later.until(lambda: all(later.last_presence(i) == "offline" for i in ids))
        assert all(retained for _, _, retained in later.presence)


async def test_run_fleet_runs_until_stopped_and_reports(mqtt_url: str, city: str) -> None:
    stop = asyncio.Event()
    connected = asyncio.Event()

    def progress(done: int, total: int) -> None:
        if done == total:
            connected.set()

    runner = asyncio.create_task(
        run_fleet(
            FleetConfig(mqtt_url=mqtt_url, offline_ratio=0.5, session_expiry_s=60),
            specs(city, 4),
            progress=progress,
            stop=stop,
        )
    )
    await connected.wait()
    stop.set()
    stats = await runner
    assert (stats.speakers, stats.online, stats.offline) == (4, 2, 2)
    assert stats.connect_s is not None


async def test_an_unreachable_broker_fails_the_start() -> None:
    port = free_port()
    fleet = Fleet(FleetConfig(mqtt_url=f"mqtt://127.0.0.1:{port}", connect_timeout_s=2))
    with pytest.raises(FleetError):
        await fleet.start(specs("nowhere", 2))


def test_faulty_speakers_are_chosen_the_same_way_for_the_same_seed() -> None:
    ids = [f"s{i:03d}" for i in range(100)]
    config = FleetConfig(mqtt_url="mqtt://h", offline_ratio=0.1, reject_ratio=0.05, seed=1)
    first = choose_faults(ids, config)
    assert first == choose_faults(list(reversed(ids)), config)
    assert sum(f.offline for f in first.values()) == 10
    assert sum(f.reject for f in first.values()) == 5
    other = choose_faults(ids, FleetConfig(mqtt_url="mqtt://h", offline_ratio=0.1, seed=2))
    assert {i for i, f in other.items() if f.offline} != {i for i, f in first.items() if f.offline}


@pytest.mark.parametrize(
    "fields",
    [
        {"mqtt_url": "http://h"},
        {"mqtt_url": "mqtt://h", "speed": 0},
        {"mqtt_url": "mqtt://h", "offline_ratio": 1.5},
        {"mqtt_url": "mqtt://h", "connect_concurrency": 0},
    ],
)
def test_bad_fleet_configs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        FleetConfig(**fields)  # type: ignore[arg-type]


async def test_horns_start_at_the_play_at_time_and_a_skewed_clock_is_reported(
    mqtt_url: str, city: str, observer: Observer, clip: bytes
) -> None:
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, speed=50, heartbeat_s=0.2, session_expiry_s=60))
    speakers = specs(city, 3, villages=1)
    # One clock 400 ms behind (no NTP): it must start with the others all the same.
    speakers[2] = dataclasses.replace(speakers[2], clock_offset_ms=-400)
    ids = [s.identity.speaker for s in speakers]
    await fleet.start(speakers)
    try:
        await observer.watch_presence(ids)
        warm = play(city, clip)  # a first command teaches each speaker its offset
        await observer.publish(contract.command_topic_all(city), warm)
        await observer.until(lambda: {a.speaker for a in observer.of(warm.id)} >= set(ids))
        sent = contract.now_ms()
        timed = play(city, clip, play_at_ms=sent + 1500)
        await observer.publish(contract.command_topic_all(city), timed)
        await observer.until(
            lambda: {a.speaker for a in observer.of(timed.id) if a.status == "played"} >= set(ids)
        )
        starts = fleet.starts[timed.broadcast_id]
        assert set(starts) == set(ids)
        assert all(at >= timed.play_at_ms - 20 for at in starts.values()), "none before"  # type: ignore[operator]
        assert set(fleet.start_spread_ms(timed.broadcast_id)) == {"v0"}

        def offsets() -> dict[str, int | None]:
            latest: dict[str, int | None] = {}
            for speaker, presence, _ in observer.presence:
                if presence is not None and presence.status == "heartbeat":
                    latest[speaker] = presence.clock_offset_ms
            return latest

        await observer.until(lambda: offsets().get(ids[2]) is not None)
        assert offsets()[ids[2]] <= -300  # type: ignore[operator]
    finally:
        await fleet.stop()
