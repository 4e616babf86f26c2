"""SpeakerCore pre-emption: a higher priority interrupts, the interrupted one plays again later."""

from __future__ import annotations

from pathlib import Path

from devices.actions import Ack, Action, Play, Prepare, Stop
from devices.journal import SqliteJournal
from devices.speaker import SpeakerCore
from devices.states import Journal, MemoryJournal
from tests.devices.commands import NOW, audio, cancel_of, command, resend
from wire import contract
from wire.contract import DEFAULT_PRIORITY, Category, FailReason

IDENTITY = contract.SpeakerIdentity(city="testcity", district="d1", village="v1", speaker="s1")
CLIP = b"OggS" + bytes(range(256)) * 4
CLIP_MS = 10_000


class Clock:
    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def make_core(journal: Journal | None = None, clock: Clock | None = None) -> SpeakerCore:
    return SpeakerCore(IDENTITY, codecs=("opus",), journal=journal, clock=clock or Clock())


def notice(category: Category, **fields: object) -> contract.Command:
    return command(  # type: ignore[arg-type]
        refs=(audio(CLIP, duration_ms=CLIP_MS),),
        category=category,
        priority=DEFAULT_PRIORITY[category],
        **fields,
    )


def payload(cmd: contract.Command) -> bytes:
    return contract.encode_command(cmd)


def acks(actions: list[Action]) -> list[tuple[str, str, str | None]]:
    """(command id, status, reason) of every ack, in order."""
    return [
        (a.message.command_id, a.message.status.value, a.message.reason)
        for a in actions
        if isinstance(a, Ack)
    ]


def plays(actions: list[Action]) -> list[str]:
    return [a.command.id for a in actions if isinstance(a, Play)]


def stops(actions: list[Action]) -> list[tuple[str, FailReason]]:
    return [(a.command_id, a.reason) for a in actions if isinstance(a, Stop)]


def prepares(actions: list[Action]) -> list[str]:
    return [a.command_id for a in actions if isinstance(a, Prepare)]


def arrive(core: SpeakerCore, cmd: contract.Command) -> list[Action]:
    """Deliver `cmd` and report its audio prepared."""
    return core.on_command(payload(cmd)) + core.on_prepared(
        cmd.id, duration_ms=CLIP_MS, level_dbfs=-14.0
    )


def finish(core: SpeakerCore, cmd: contract.Command) -> list[Action]:
    return core.on_play_finished(cmd.id, played_ms=CLIP_MS)


# --- order ----------------------------------------------------------------------------------


def test_a_disaster_interrupts_a_village_notice_which_then_plays_from_the_start() -> None:
    core = make_core()
    village = notice(Category.VILLAGE_NOTICE)
    disaster = notice(Category.DISASTER)
    assert plays(arrive(core, village)) == [village.id]

    actions = core.on_command(payload(disaster))
    assert stops(actions) == [(village.id, FailReason.PREEMPTED)]
    assert acks(actions) == [
        (disaster.id, "received", None),
        (village.id, "preempted", None),
    ]
    stop = next(a for a in actions if isinstance(a, Stop))
    preempted_ack = next(
        a for a in actions if isinstance(a, Ack) and a.message.command_id == village.id
    )
    assert actions.index(stop) < actions.index(preempted_ack), "the sound stops before the ack"
    assert core.playing is None  # the horn waits for the disaster's audio
    assert core.queued == (disaster.id, village.id)
    assert core.journal.state_of(village.id) == "preempted"
    assert core.counters.preempted == 1

    actions = core.on_prepared(disaster.id, duration_ms=CLIP_MS, level_dbfs=-10.0)
    assert plays(actions) == [disaster.id]
    assert acks(actions) == [(disaster.id, "playing", None)]

    actions = finish(core, disaster)
    assert acks(actions) == [(disaster.id, "played", None), (village.id, "playing", None)]
    assert plays(actions) == [village.id]
    assert core.journal.state_of(village.id) == "playing"

    actions = core.on_play_finished(village.id, played_ms=CLIP_MS)
    (played,) = [a.message for a in actions if isinstance(a, Ack)]
    assert (played.status, played.played_ms) == ("played", CLIP_MS)  # the whole final playback
    assert played.audio_sha256 == village.audio[0].sha256
    assert core.journal.state_of(village.id) == "played"
    assert core.counters.played == 2
    assert core.counters.received == 2  # a pre-emption is not a second arrival


def test_an_equal_priority_waits_its_turn() -> None:
    core = make_core()
    first, second = notice(Category.ADMINISTRATIVE), notice(Category.ADMINISTRATIVE)
    arrive(core, first)
    actions = arrive(core, second)
    assert stops(actions) == []
    assert plays(actions) == []
    assert acks(actions) == [(second.id, "received", None)]
    assert core.playing == first.id
    assert plays(finish(core, first)) == [second.id]
    assert core.counters.preempted == 0


def test_a_lower_priority_waits_its_turn() -> None:
    core = make_core()
    disaster, village = notice(Category.DISASTER), notice(Category.VILLAGE_NOTICE)
    arrive(core, disaster)
    actions = arrive(core, village)
    assert stops(actions) == []
    assert plays(actions) == []
    assert core.playing == disaster.id
    assert core.queued == (village.id,)
    assert plays(finish(core, disaster)) == [village.id]


def test_each_higher_priority_interrupts_in_turn_and_all_play_in_priority_order() -> None:
    core = make_core()
    village = notice(Category.VILLAGE_NOTICE)
    admin = notice(Category.ADMINISTRATIVE)
    crime = notice(Category.CRIME_PREVENTION)
    disaster = notice(Category.DISASTER)
    arrive(core, village)
    assert stops(arrive(core, admin)) == [(village.id, FailReason.PREEMPTED)]
    assert stops(arrive(core, disaster)) == [(admin.id, FailReason.PREEMPTED)]
    assert stops(arrive(core, crime)) == []  # lower than the disaster: it waits
    order = [core.playing]
    while core.playing is not None:
        current = core.playing
        core.on_play_finished(current, played_ms=CLIP_MS)
        order.append(core.playing)
    assert order == [disaster.id, crime.id, admin.id, village.id, None]
    assert core.counters.played == 4
    assert core.counters.preempted == 2


def test_a_preempted_command_stays_first_among_its_priority() -> None:
    core = make_core()
    first, second = notice(Category.VILLAGE_NOTICE), notice(Category.VILLAGE_NOTICE)
    disaster = notice(Category.DISASTER)
    arrive(core, first)
    arrive(core, second)
    arrive(core, disaster)
    assert core.queued == (first.id, second.id)
    assert plays(finish(core, disaster)) == [first.id]


def test_the_interrupted_one_resumes_when_the_higher_ones_audio_cannot_be_had() -> None:
    core = make_core()
    village, disaster = notice(Category.VILLAGE_NOTICE), notice(Category.DISASTER)
    arrive(core, village)
    core.on_command(payload(disaster))
    actions = core.on_prepare_failed(disaster.id, FailReason.FETCH_FAILED)
    assert acks(actions) == [(disaster.id, "failed", "fetch_failed"), (village.id, "playing", None)]
    assert plays(actions) == [village.id]


# --- expiry ---------------------------------------------------------------------------------


def test_a_preempted_command_whose_expiry_passes_is_never_played() -> None:
    clock = Clock()
    core = make_core(clock=clock)
    village = notice(Category.VILLAGE_NOTICE, ttl_ms=15_000)
    disaster = notice(Category.DISASTER)
    arrive(core, village)
    arrive(core, disaster)
    clock.ms += 20_000
    actions = finish(core, disaster)
    assert acks(actions) == [
        (disaster.id, "played", None),
        (village.id, "failed", FailReason.EXPIRED.value),
    ]
    assert plays(actions) == []
    assert core.journal.state_of(village.id) == "failed"
    assert core.queued == ()
    assert core.counters.played == 1


def test_a_preempted_command_expires_on_tick_while_the_higher_one_plays() -> None:
    clock = Clock()
    core = make_core(clock=clock)
    village = notice(Category.VILLAGE_NOTICE, ttl_ms=15_000)
    disaster = notice(Category.DISASTER)
    arrive(core, village)
    arrive(core, disaster)
    assert core.on_tick() == []
    clock.ms += 15_000
    assert acks(core.on_tick()) == [(village.id, "failed", FailReason.EXPIRED.value)]
    assert core.playing == disaster.id
    assert plays(finish(core, disaster)) == []


# --- cancel and duplicates ------------------------------------------------------------------


def test_cancelling_a_preempted_broadcast_drops_it_from_the_queue() -> None:
    core = make_core()
    village, disaster = notice(Category.VILLAGE_NOTICE), notice(Category.DISASTER)
    arrive(core, village)
    arrive(core, disaster)
    actions = core.on_command(payload(cancel_of(village)))
    assert stops(actions) == []  # it is not playing: the disaster plays on
    assert (village.id, "failed", FailReason.CANCELLED.value) in acks(actions)
    assert core.playing == disaster.id
    assert core.queued == ()
    assert core.journal.state_of(village.id) == "failed"
    assert plays(finish(core, disaster)) == []


def test_a_replayed_preempted_id_is_answered_and_not_queued_twice() -> None:
    clock = Clock()
    core = make_core(clock=clock)
    village, disaster = notice(Category.VILLAGE_NOTICE), notice(Category.DISASTER)
    arrive(core, village)
    arrive(core, disaster)
    clock.ms += 1_000
    for again in (village, resend(village, at_ms=clock.ms)):
        actions = core.on_command(payload(again))
        assert acks(actions) == [(village.id, "preempted", None)]
        assert prepares(actions) == []
        assert stops(actions) == []
    assert acks(core.on_command(payload(disaster))) == [(disaster.id, "playing", None)]
    assert core.queued == (village.id,)
    assert core.counters.duplicates == 3
    finish(core, disaster)
    finish(core, village)
    assert core.counters.played == 2


# --- restart --------------------------------------------------------------------------------


def _recovery_after_preemption(journal: Journal) -> None:
    clock = Clock()
    before = make_core(journal=journal, clock=clock)
    village = notice(Category.VILLAGE_NOTICE)
    stale = notice(Category.VILLAGE_NOTICE, ttl_ms=5_000)
    disaster = notice(Category.DISASTER)
    arrive(before, village)
    arrive(before, stale)
    arrive(before, disaster)  # village is pre-empted; stale waits
    assert [(e.command_id, e.state) for e in journal.unfinished()] == [
        (village.id, "preempted"),
        (stale.id, "received"),
        (disaster.id, "playing"),
    ]
    clock.ms += 6_000  # stale expires while the speaker is down

    after = make_core(journal=journal, clock=clock)
    actions = after.recover()
    by_id = {cid: (status, reason) for cid, status, reason in acks(actions)}
    assert by_id[village.id] == ("preempted", None)  # still waiting to play from the start
    assert by_id[stale.id] == ("failed", FailReason.EXPIRED.value)
    assert by_id[disaster.id] == ("failed", FailReason.INTERRUPTED.value)
    assert prepares(actions) == [village.id]
    assert after.queued == (village.id,)

    actions = after.on_prepared(village.id, duration_ms=CLIP_MS, level_dbfs=-14.0)
    assert plays(actions) == [village.id]
    assert acks(finish(after, village)) == [(village.id, "played", None)]
    assert journal.unfinished() == []


def test_recovery_queues_a_preempted_command_again() -> None:
    _recovery_after_preemption(MemoryJournal(keep_payloads=True))


def test_recovery_queues_a_preempted_command_again_from_the_agents_journal(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        _recovery_after_preemption(journal)
    finally:
        journal.close()


def test_recovery_fails_a_preempted_command_that_expired_meanwhile() -> None:
    journal = MemoryJournal(keep_payloads=True)
    clock = Clock()
    before = make_core(journal=journal, clock=clock)
    village = notice(Category.VILLAGE_NOTICE, ttl_ms=5_000)
    arrive(before, village)
    arrive(before, notice(Category.DISASTER))
    clock.ms += 5_000
    after = make_core(journal=journal, clock=clock)
    actions = after.recover()
    assert (village.id, "failed", FailReason.EXPIRED.value) in acks(actions)
    assert plays(actions) == []
    assert after.queued == ()
    assert journal.state_of(village.id) == "failed"
