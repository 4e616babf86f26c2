"""SpeakerCore against fakes: admission, at-most-once, order, expiry, cancel, recovery.

Over 600 lines on purpose: one story of one speaker, each test building on the fakes above it.
"""

from __future__ import annotations

import hashlib

import pytest

from devices.actions import Ack, Action, Play, Prepare, Stop
from devices.speaker import REFUSAL_BUDGET, SpeakerCore
from devices.states import MemoryJournal
from tests.devices.commands import NOW, audio, cancel_of, command, mp3_clip, new_keys, resend
from wire import contract
from wire.contract import Codec, FailReason, RejectReason

IDENTITY = contract.SpeakerIdentity(city="testcity", district="d1", village="v1", speaker="s1")
CLIP = b"OggS" + bytes(range(256)) * 4


class Clock:
    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def make_core(
    *,
    codecs: tuple[str, ...] = ("opus", "mp3"),
    verify: contract.SignatureCheck | None = None,
    journal: MemoryJournal | None = None,
    clock: Clock | None = None,
    plays_live: bool = True,
) -> tuple[SpeakerCore, Clock]:
    clock = clock or Clock()
    core = SpeakerCore(
        IDENTITY,
        codecs=codecs,
        journal=journal,
        verify=verify,
        clock=clock,
        plays_live=plays_live,
    )
    return core, clock


def payload(cmd: contract.Command) -> bytes:
    return contract.encode_command(cmd)


def acks(actions: list[Action]) -> list[tuple[str, str | None]]:
    return [(a.message.status.value, a.message.reason) for a in actions if isinstance(a, Ack)]


def plays(actions: list[Action]) -> list[str]:
    return [a.command.id for a in actions if isinstance(a, Play)]


def prepares(actions: list[Action]) -> list[Prepare]:
    return [a for a in actions if isinstance(a, Prepare)]


def play_cmd(**fields: object) -> contract.Command:
    return command(refs=(audio(CLIP),), **fields)  # type: ignore[arg-type]


def admit_and_start(core: SpeakerCore, cmd: contract.Command) -> list[Action]:
    """Deliver `cmd`, prepare its audio; returns the actions of both steps."""
    first = core.on_command(payload(cmd))
    return first + core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-12.5)


# --- the happy path -------------------------------------------------------------------------


def test_a_command_is_received_prepared_played_and_proven() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    actions = core.on_command(payload(cmd))
    assert acks(actions) == [("received", None)]
    (prepare,) = prepares(actions)
    assert prepare.data == CLIP  # inline bytes, already checked against their sha256
    assert core.journal.state_of(cmd.id) == "received"

    actions = core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-12.5)
    assert acks(actions) == [("playing", None)]
    assert plays(actions) == [cmd.id]
    assert core.journal.state_of(cmd.id) == "playing"  # before the audio starts

    actions = core.on_play_finished(cmd.id, played_ms=500)
    (ack,) = [a.message for a in actions if isinstance(a, Ack)]
    assert ack.status == "played"
    assert ack.audio_sha256 == hashlib.sha256(CLIP).hexdigest()
    assert ack.played_ms == 500
    assert ack.level_dbfs == -12.5
    assert ack.speaker == "s1"
    assert core.journal.state_of(cmd.id) == "played"
    assert core.counters.played == 1


def test_play_action_carries_no_inline_audio() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    (play,) = [a for a in admit_and_start(core, cmd) if isinstance(a, Play)]
    assert play.audio.data is None
    assert all(ref.data is None for ref in play.command.audio)
    assert play.audio.sha256 == cmd.audio[0].sha256


# --- at most once ---------------------------------------------------------------------------


def test_a_played_command_id_is_never_played_again() -> None:
    core, clock = make_core()
    cmd = play_cmd()
    admit_and_start(core, cmd)
    core.on_play_finished(cmd.id, played_ms=500)
    clock.ms += 10_000
    # The gateway asking again signs afresh (a new nonce): answered with the proof.
    actions = core.on_command(payload(resend(cmd, at_ms=clock.ms)))
    assert plays(actions) == []
    assert prepares(actions) == []
    (ack,) = [a.message for a in actions if isinstance(a, Ack)]
    assert ack.status == "played"
    assert ack.audio_sha256 == cmd.audio[0].sha256  # the proof is repeated too
    # The same bytes again after it played: a captured command replayed, refused and reported.
    actions = core.on_command(payload(cmd))
    assert plays(actions) == []
    assert acks(actions) == [("rejected", "replayed")]
    assert core.counters.played == 1
    assert core.counters.duplicates == 2
    assert core.counters.replays == 1


def test_duplicates_while_queued_or_playing_repeat_the_current_state() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    core.on_command(payload(cmd))
    assert acks(core.on_command(payload(cmd))) == [("received", None)]
    core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-10)
    duplicate = core.on_command(payload(cmd))
    assert acks(duplicate) == [("playing", None)]
    assert plays(duplicate) == []
    assert core.queued == ()


def test_a_rejected_id_is_answered_the_same_way_and_never_played() -> None:
    core, _ = make_core()
    cmd = play_cmd(scope=contract.Scope(kind="village", ids=("elsewhere",)))
    assert acks(core.on_command(payload(cmd))) == [("rejected", "out_of_scope")]
    assert core.journal.state_of(cmd.id) == "rejected"
    replay = core.on_command(payload(cmd))
    assert acks(replay) == [("rejected", "out_of_scope")]
    assert plays(replay) == []
    assert prepares(replay) == []


# --- checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"city": "othercity"}, "out_of_scope"),
        ({"scope": contract.Scope(kind="district", ids=("d2", "d3"))}, "out_of_scope"),
        ({"scope": contract.Scope(kind="speaker", ids=("s2",))}, "out_of_scope"),
        ({"at_ms": NOW - 120_000}, "expired"),
    ],
)
def test_commands_that_fail_the_contract_checks_are_rejected(
    fields: dict[str, object], reason: str
) -> None:
    core, _ = make_core()
    cmd = play_cmd(**fields)
    actions = core.on_command(payload(cmd))
    assert acks(actions) == [("rejected", reason)]
    assert plays(actions) == []
    assert prepares(actions) == []
    assert core.counters.rejected == 1


def test_commands_in_scope_by_district_village_or_speaker_are_accepted() -> None:
    core, _ = make_core()
    for scope in (
        contract.Scope(kind="district", ids=("d9", "d1")),
        contract.Scope(kind="village", ids=("v1",)),
        contract.Scope(kind="speaker", ids=("s1",)),
    ):
        assert acks(core.on_command(payload(play_cmd(scope=scope))))[0] == ("received", None)


def test_a_command_from_the_future_is_rejected_but_not_burned() -> None:
    core, clock = make_core()
    cmd = play_cmd(at_ms=NOW + 3_600_000)
    assert acks(core.on_command(payload(cmd))) == [("rejected", "not_yet_valid")]
    assert core.journal.state_of(cmd.id) is None
    clock.ms = NOW + 3_600_000  # the speaker's clock was wrong; now it is set
    assert acks(core.on_command(payload(cmd))) == [("received", None)]


def test_with_keys_unsigned_and_forged_commands_are_rejected_and_not_journaled() -> None:
    keys, other = new_keys("k1"), new_keys("k1")
    core, _ = make_core(verify=keys.check)
    cmd = play_cmd()
    assert acks(core.on_command(payload(cmd))) == [("rejected", "unsigned")]
    forged = other.sign(cmd)  # right key id, wrong key
    assert acks(core.on_command(payload(forged))) == [("rejected", "bad_signature")]
    unknown = new_keys("k9").sign(cmd)
    assert acks(core.on_command(payload(unknown))) == [("rejected", "unknown_key")]
    tampered = keys.sign(cmd).model_copy(update={"priority": 999})
    assert acks(core.on_command(payload(tampered))) == [("rejected", "bad_signature")]
    # A forgery must not burn the id: the genuine command still plays.
    assert core.journal.state_of(cmd.id) is None
    actions = core.on_command(payload(keys.sign(cmd)))
    assert acks(actions) == [("received", None)]
    assert len(prepares(actions)) == 1


def test_a_flood_of_forged_commands_is_answered_within_a_budget_and_a_genuine_one_plays() -> None:
    keys, other = new_keys("k1"), new_keys("k1")
    core, clock = make_core(verify=keys.check)
    answered = [acks(core.on_command(payload(other.sign(play_cmd())))) for _ in range(50)]
    refused = [a for a in answered if a]
    assert refused == [[("rejected", "bad_signature")]] * REFUSAL_BUDGET
    assert core.counters.refusals_unsent == 50 - REFUSAL_BUDGET
    # The budget refills with time (one a minute's share: 2 s), and never holds back a genuine
    # command's acks.
    clock.ms += 2_000
    assert acks(core.on_command(payload(other.sign(play_cmd())))) == [("rejected", "bad_signature")]
    assert acks(core.on_command(payload(keys.sign(play_cmd())))) == [("received", None)]


def test_with_keys_a_signed_command_out_of_scope_is_journaled_a_forged_one_is_not() -> None:
    keys = new_keys()
    core, _ = make_core(verify=keys.check)
    elsewhere = contract.Scope(kind="village", ids=("v2",))
    genuine = keys.sign(play_cmd(scope=elsewhere))
    assert acks(core.on_command(payload(genuine))) == [("rejected", "out_of_scope")]
    assert core.journal.state_of(genuine.id) == "rejected"
    forged = play_cmd(scope=elsewhere)
    assert acks(core.on_command(payload(forged))) == [("rejected", "out_of_scope")]
    assert core.journal.state_of(forged.id) is None


def test_inline_audio_that_does_not_match_its_hash_is_rejected_and_not_burned() -> None:
    core, _ = make_core()
    good = audio(CLIP)
    bad = good.model_copy(update={"sha256": hashlib.sha256(b"other").hexdigest()})
    cmd = command(refs=(bad,))
    assert acks(core.on_command(payload(cmd))) == [("rejected", "integrity")]
    short = good.model_copy(update={"size": good.size + 1})
    assert acks(core.on_command(payload(cmd.model_copy(update={"audio": (short,)})))) == [
        ("rejected", "integrity")
    ]
    assert core.journal.state_of(cmd.id) is None
    fixed = cmd.model_copy(update={"audio": (good,)})
    assert acks(core.on_command(payload(fixed))) == [("received", None)]


def test_codec_choice_follows_the_command_order_among_playable_codecs() -> None:
    mp3 = mp3_clip(0.2)
    refs = (audio(CLIP, Codec.OPUS), audio(mp3, Codec.MP3))
    mp3_only, _ = make_core(codecs=("mp3",))
    (prepare,) = prepares(mp3_only.on_command(payload(command(refs=refs))))
    assert prepare.audio.codec == "mp3"
    assert prepare.data == mp3
    both, _ = make_core(codecs=("mp3", "opus"))
    (prepare,) = prepares(both.on_command(payload(command(refs=refs))))
    assert prepare.audio.codec == "opus"


def test_no_playable_codec_is_rejected_unsupported_codec() -> None:
    core, _ = make_core(codecs=("opus",))
    cmd = command(refs=(audio(mp3_clip(0.2), Codec.MP3),))
    assert acks(core.on_command(payload(cmd))) == [("rejected", "unsupported_codec")]
    assert acks(core.on_command(payload(cmd))) == [("rejected", "unsupported_codec")]
    assert core.counters.duplicates == 1


def test_a_speaker_without_a_stream_player_refuses_a_live_broadcast() -> None:
    stream = contract.LiveStream(session=contract.new_id(), key=contract.new_live_key())
    cmd = command(refs=(audio(b"OggS-chime"),), live=stream)
    core, _ = make_core(codecs=("opus",), plays_live=False)
    assert acks(core.on_command(payload(cmd))) == [("rejected", "unsupported_codec")]
    assert core.playing is None
    streaming, _ = make_core(codecs=("opus",))
    assert acks(streaming.on_command(payload(cmd)))[0][0] == "received"


def test_garbage_is_counted_and_a_readable_invalid_command_is_rejected_malformed() -> None:
    core, _ = make_core()
    assert core.on_command(b"\x00not json") == []
    assert core.on_command(b'{"id": "nope"}') == []
    cmd = play_cmd()
    broken = payload(cmd).replace(b'"priority":20', b'"priority":"high"')
    actions = core.on_command(broken)
    assert acks(actions) == [("rejected", "malformed")]
    assert actions[0].message.command_id == cmd.id  # type: ignore[union-attr]
    assert core.counters.malformed == 3
    # Nothing in an invalid payload is trusted: the valid command still plays.
    assert core.journal.state_of(cmd.id) is None
    assert acks(core.on_command(payload(cmd))) == [("received", None)]


# --- order and expiry -----------------------------------------------------------------------


def test_one_at_a_time_higher_priority_first_fifo_within_equal() -> None:
    core, _ = make_core()
    first = play_cmd(priority=40)
    admit_and_start(core, first)
    waiting = [
        play_cmd(priority=10),
        play_cmd(priority=40),
        play_cmd(priority=20),
        play_cmd(priority=20),
    ]
    for cmd in waiting:
        assert plays(admit_and_start(core, cmd)) == []  # something is playing
    assert core.playing == first.id
    order = []
    current: str | None = first.id
    while current is not None:
        actions = core.on_play_finished(current, played_ms=500)
        started = plays(actions)
        current = started[0] if started else None
        if current:
            order.append(current)
    assert order == [waiting[1].id, waiting[2].id, waiting[3].id, waiting[0].id]


def test_a_higher_priority_command_still_being_prepared_goes_first() -> None:
    core, _ = make_core()
    low, high = play_cmd(priority=10), play_cmd(priority=40)
    core.on_command(payload(low))
    core.on_command(payload(high))
    assert plays(core.on_prepared(low.id, duration_ms=500, level_dbfs=-9)) == []
    assert plays(core.on_prepared(high.id, duration_ms=500, level_dbfs=-9)) == [high.id]


def test_a_command_that_expires_before_its_turn_is_never_played() -> None:
    core, clock = make_core()
    long = play_cmd(priority=40)
    short = play_cmd(priority=10, ttl_ms=5_000)
    admit_and_start(core, long)
    admit_and_start(core, short)
    clock.ms += 6_000
    actions = core.on_play_finished(long.id, played_ms=500)
    assert acks(actions) == [("played", None), ("failed", "expired")]
    assert plays(actions) == []
    assert core.journal.state_of(short.id) == "failed"


def test_expiry_while_being_prepared_and_on_tick() -> None:
    core, clock = make_core()
    slow = play_cmd(ttl_ms=5_000)
    core.on_command(payload(slow))
    clock.ms += 5_000
    actions = core.on_prepared(slow.id, duration_ms=500, level_dbfs=-9)
    assert acks(actions) == [("failed", "expired")]
    assert plays(actions) == []

    playing, waiting = play_cmd(priority=40), play_cmd(priority=10, ttl_ms=3_000)
    clock.ms = NOW
    admit_and_start(core, playing)
    admit_and_start(core, waiting)
    assert core.on_tick() == []
    clock.ms += 3_000
    assert acks(core.on_tick()) == [("failed", "expired")]
    assert core.queued == ()


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_stops_the_playing_command_and_drops_the_queued_ones() -> None:
    core, _ = make_core()
    play = play_cmd(priority=20)
    also = play_cmd(priority=20, broadcast_id=play.broadcast_id)
    other = play_cmd(priority=10)
    admit_and_start(core, play)
    admit_and_start(core, also)
    admit_and_start(core, other)
    actions = core.on_command(payload(cancel_of(play)))
    stops = [a for a in actions if isinstance(a, Stop)]
    assert [(s.command_id, s.reason) for s in stops] == [(play.id, FailReason.CANCELLED)]
    assert actions.index(stops[0]) < actions.index(
        next(a for a in actions if isinstance(a, Ack) and a.message.command_id == play.id)
    )
    by_id = {a.message.command_id: a.message for a in actions if isinstance(a, Ack)}
    assert (by_id[play.id].status, by_id[play.id].reason) == ("failed", "cancelled")
    assert (by_id[also.id].status, by_id[also.id].reason) == ("failed", "cancelled")
    assert plays(actions) == [other.id]  # the horn is free for the next one
    # A late finish of the stopped audio changes nothing; a replay is answered "cancelled".
    assert core.on_play_finished(play.id, played_ms=200) == []
    assert acks(core.on_command(payload(play))) == [("failed", "cancelled")]


def test_a_cancel_that_arrives_first_fails_the_play_when_it_comes() -> None:
    core, _ = make_core()
    play = play_cmd()
    cancel = cancel_of(play)
    assert acks(core.on_command(payload(cancel))) == [("received", None), ("played", None)]
    actions = core.on_command(payload(play))
    assert acks(actions) == [("failed", "cancelled")]
    assert prepares(actions) == []
    # A duplicate cancel: the gateway's retry is answered, a replay of its bytes refused.
    assert acks(core.on_command(payload(resend(cancel, at_ms=cancel.issued_at_ms)))) == [
        ("played", None)
    ]
    assert acks(core.on_command(payload(cancel))) == [("rejected", "replayed")]


def test_a_forged_cancel_is_rejected_when_signatures_are_required() -> None:
    keys = new_keys()
    core, _ = make_core(verify=keys.check)
    play = keys.sign(play_cmd())
    admit_and_start(core, play)
    actions = core.on_command(payload(cancel_of(play)))
    assert acks(actions) == [("rejected", "unsigned")]
    assert core.playing == play.id
    actions = core.on_command(payload(keys.sign(cancel_of(play))))
    assert [s.command_id for s in actions if isinstance(s, Stop)] == [play.id]


# --- failures while preparing ---------------------------------------------------------------


def test_a_failed_fetch_can_be_retried_by_a_later_copy() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    core.on_command(payload(cmd))
    assert acks(core.on_prepare_failed(cmd.id, FailReason.FETCH_FAILED)) == [
        ("failed", "fetch_failed")
    ]
    again = core.on_command(payload(cmd))
    assert acks(again) == [("received", None)]
    assert len(prepares(again)) == 1


def test_fetched_audio_with_the_wrong_hash_is_rejected_integrity_and_retryable() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    core.on_command(payload(cmd))
    assert acks(core.on_prepare_failed(cmd.id, RejectReason.INTEGRITY)) == [
        ("rejected", "integrity")
    ]
    assert acks(core.on_command(payload(cmd))) == [("received", None)]


def test_undecodable_audio_is_final() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    core.on_command(payload(cmd))
    core.on_prepare_failed(cmd.id, FailReason.UNDECODABLE)
    replay = core.on_command(payload(cmd))
    assert acks(replay) == [("failed", "undecodable")]
    assert prepares(replay) == []


def test_a_player_error_fails_the_command_and_frees_the_horn() -> None:
    core, _ = make_core()
    one, two = play_cmd(), play_cmd()
    admit_and_start(core, one)
    admit_and_start(core, two)
    actions = core.on_play_failed(one.id)
    assert acks(actions) == [("failed", "player_error"), ("playing", None)]
    assert plays(actions) == [two.id]


# --- refusing and recovering ----------------------------------------------------------------


def test_refuse_answers_rejected_with_the_reason_and_replays_the_same() -> None:
    core, _ = make_core()
    cmd = play_cmd()
    assert acks(core.refuse(payload(cmd), "out_of_service")) == [("rejected", "out_of_service")]
    assert acks(core.on_command(payload(cmd))) == [("rejected", "out_of_service")]


def test_recover_fails_what_was_playing_and_requeues_what_was_waiting() -> None:
    journal = MemoryJournal(keep_payloads=True)
    before, clock = make_core(journal=journal)
    playing, waiting, expired = play_cmd(priority=40), play_cmd(), play_cmd(ttl_ms=2_000)
    admit_and_start(before, playing)
    before.on_command(payload(waiting))
    before.on_command(payload(expired))
    clock.ms += 2_000
    # The speaker restarts: a new core over the same journal.
    after, _ = make_core(journal=journal, clock=clock)
    actions = after.recover()
    by_id = {a.message.command_id: a.message for a in actions if isinstance(a, Ack)}
    assert (by_id[playing.id].status, by_id[playing.id].reason) == ("failed", "interrupted")
    assert (by_id[expired.id].status, by_id[expired.id].reason) == ("failed", "expired")
    assert by_id[waiting.id].status == "received"
    assert [p.command_id for p in prepares(actions)] == [waiting.id]
    # The interrupted command is never played again.
    assert acks(after.on_command(payload(playing))) == [("failed", "interrupted")]
    assert plays(after.on_prepared(waiting.id, duration_ms=500, level_dbfs=-9)) == [waiting.id]


def test_memory_journal_prunes_finished_entries_after_expiry() -> None:
    journal = MemoryJournal()
    core, _clock = make_core(journal=journal)
    done, waiting = play_cmd(ttl_ms=1_000), play_cmd(ttl_ms=1_000)
    admit_and_start(core, done)
    core.on_play_finished(done.id, played_ms=500)
    core.on_command(payload(waiting))
    assert journal.prune(NOW + 10_000) == 1
    assert journal.state_of(done.id) is None
    assert journal.state_of(waiting.id) == "received"


def test_recover_finishes_a_cancel_that_was_cut_short() -> None:
    journal = MemoryJournal(keep_payloads=True)
    before, clock = make_core(journal=journal)
    play = play_cmd()
    before.on_command(payload(play))
    cancel = cancel_of(play)
    # The box died after journaling the cancel and before acting on it.
    journal.record(
        cancel.id,
        cancel.broadcast_id,
        "received",
        expires_at_ms=cancel.expires_at_ms,
        payload=payload(cancel),
    )
    after, _ = make_core(journal=journal, clock=clock)
    actions = after.recover()
    by_id = {a.message.command_id: a.message for a in actions if isinstance(a, Ack)}
    assert (by_id[play.id].status, by_id[play.id].reason) == ("failed", "cancelled")
    assert by_id[cancel.id].status == "played"
    assert after.queued == ()
    assert journal.unfinished() == []


# --- tests and exercises --------------------------------------------------------------------


def test_a_test_the_city_only_logs_is_acked_without_a_sound() -> None:
    core, _ = make_core()
    cmd = play_cmd(mode="test", audible=False)
    actions = core.on_command(payload(cmd))
    assert plays(actions) == []
    assert prepares(actions) == [], "not even fetched"
    assert acks(actions) == [("received", None), ("played", None)]
    played = [a.message for a in actions if isinstance(a, Ack)][-1]
    assert (played.played_ms, played.audio_sha256) == (0, cmd.audio[0].sha256)
    assert core.counters.logged == 1
    assert core.playing is None


def test_a_logged_test_does_not_disturb_what_is_playing() -> None:
    core, _ = make_core()
    real = play_cmd()
    admit_and_start(core, real)
    actions = core.on_command(payload(play_cmd(mode="exercise", audible=False)))
    assert [a for a in actions if isinstance(a, Stop)] == []
    assert core.playing == real.id


def test_a_real_command_cannot_be_silent() -> None:
    with pytest.raises(ValueError, match="always audible"):
        play_cmd(mode="live", audible=False)


# --- copies of a known id: each is judged on its own signature ------------------------------


@pytest.mark.parametrize("started", [False, True], ids=["queued", "playing"])
def test_a_forged_copy_of_a_known_id_is_refused_never_answered_with_its_ack(
    started: bool,
) -> None:
    keys, rogue = new_keys("k1"), new_keys("k1")
    core, _ = make_core(verify=keys.check)
    genuine = keys.sign(play_cmd())
    if started:
        admit_and_start(core, genuine)
        assert core.playing == genuine.id
    else:
        core.on_command(payload(genuine))
    state = core.journal.state_of(genuine.id)
    unsigned = genuine.model_copy(update={"sig": None, "key_id": None})
    unknown = new_keys("k9").sign(genuine)
    copies = {
        "bad_signature": rogue.sign(genuine),  # the right key id, the wrong key
        "unsigned": unsigned,
        "unknown_key": unknown,
    }
    for reason, copy in copies.items():
        actions = core.on_command(payload(copy))
        assert acks(actions) == [("rejected", reason)], reason
        assert plays(actions) == []
        assert prepares(actions) == []
    garbled = payload(genuine).replace(b'"priority":', b'"priority":"x","p":')
    assert acks(core.on_command(garbled)) == [("rejected", "malformed")]
    # The genuine command is untouched: same state, still playing (or queued), plays once.
    assert core.journal.state_of(genuine.id) == state
    assert core.counters.rejected == 4
    if started:
        assert core.playing == genuine.id
        finished = core.on_play_finished(genuine.id, played_ms=500)
        assert acks(finished) == [("played", None)]


def test_after_it_played_an_authentic_copy_repeats_played_and_the_same_nonce_is_replayed() -> None:
    keys = new_keys()
    core, clock = make_core(verify=keys.check)
    genuine = keys.sign(play_cmd())
    admit_and_start(core, genuine)
    core.on_play_finished(genuine.id, played_ms=500)
    retry = keys.sign(resend(genuine, at_ms=clock.ms))  # the gateway asking again
    assert acks(core.on_command(payload(retry))) == [("played", None)]
    assert acks(core.on_command(payload(genuine))) == [("rejected", "replayed")]
    unsigned = genuine.model_copy(update={"sig": None})
    assert acks(core.on_command(payload(unsigned))) == [("rejected", "unsigned")]
    assert core.counters.played == 1
