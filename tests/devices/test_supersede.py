"""SpeakerCore: one message plays once, whatever order a command, its cancel and its resend
arrive in (a speaker that wakes after the gateway gave up on it)."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError

from devices.actions import Ack, Action, Play, Prepare
from devices.speaker import SpeakerCore
from devices.states import MemoryJournal
from tests.devices.commands import cancel_of, command, new_keys
from tests.devices.test_speaker import acks, make_core, payload, play_cmd, plays, prepares
from wire import contract
from wire.contract import FailReason

SPEAKER = contract.Scope(kind="speaker", ids=("s1",))


def resend_of(*earlier: contract.Command, **fields: object) -> contract.Command:
    """A resend: a new command of its own on the speaker's topic, naming what it stands in for."""
    return play_cmd(scope=SPEAKER, supersedes=tuple(c.id for c in earlier), **fields)


def by_id(actions: list[Action]) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    for action in actions:
        if isinstance(action, Ack):
            message = action.message
            found.setdefault(message.command_id, []).append((message.status, message.reason))
    return found


def play_through(core: SpeakerCore, cmd: contract.Command) -> list[Action]:
    actions = core.on_command(payload(cmd))
    actions += core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-12.5)
    return actions + core.on_play_finished(cmd.id, played_ms=500)


def test_a_woken_speaker_drops_a_command_cancelled_behind_it_and_plays_the_resend() -> None:
    core, _ = make_core()
    original = play_cmd()
    cancel = cancel_of(original).model_copy(update={"scope": SPEAKER})
    again = resend_of(original)
    # The backlog of a frozen speaker, in the order the broker kept it; nothing was ready yet.
    actions = core.on_command(payload(original))
    actions += core.on_command(payload(cancel))
    actions += core.on_command(payload(again))
    actions += core.on_prepared(original.id, duration_ms=500, level_dbfs=-12.5)
    actions += core.on_prepared(again.id, duration_ms=500, level_dbfs=-12.5)
    assert plays(actions) == [again.id]
    assert by_id(actions)[original.id] == [("received", None), ("failed", "cancelled")]


def test_a_late_original_after_its_resend_is_never_played() -> None:
    core, _ = make_core()
    original = play_cmd()
    again = resend_of(original)
    played = play_through(core, again)
    assert plays(played) == [again.id]
    late = core.on_command(payload(original))
    assert acks(late) == [("failed", FailReason.SUPERSEDED)]
    assert prepares(late) == []
    assert core.journal.state_of(original.id) == "failed"
    # Still held, not yet played: the same.
    core2, _ = make_core()
    first = play_cmd()
    second = resend_of(first)
    core2.on_command(payload(second))
    assert acks(core2.on_command(payload(first))) == [("failed", FailReason.SUPERSEDED)]
    assert core2.counters.superseded == 1


def test_a_resend_of_what_already_played_is_acked_played_without_a_sound() -> None:
    core, _ = make_core()
    original = play_cmd()
    play_through(core, original)
    again = resend_of(original)
    actions = core.on_command(payload(again))
    assert plays(actions) == []
    assert prepares(actions) == []
    (received, played) = [a.message for a in actions if isinstance(a, Ack)]
    assert (received.status, played.status) == ("received", "played")
    assert played.already_played_as == original.id
    assert played.audio_sha256 is not None
    assert played.played_ms == 500
    assert core.counters.played == 1
    assert core.counters.already_played == 1
    # Asked again by the gateway: the same answer, still without a sound.
    retry = again.model_copy(update={"nonce": contract.new_nonce()})
    (repeat,) = [a.message for a in core.on_command(payload(retry)) if isinstance(a, Ack)]
    assert (repeat.status, repeat.already_played_as) == ("played", original.id)


def test_a_resend_drops_the_original_still_waiting() -> None:
    core, _ = make_core()
    original = play_cmd()
    again = resend_of(original)
    actions = core.on_command(payload(original))
    actions += core.on_command(payload(again))
    assert by_id(actions)[original.id][-1] == ("failed", FailReason.SUPERSEDED)
    actions += core.on_prepared(original.id, duration_ms=500, level_dbfs=-12.5)
    actions += core.on_prepared(again.id, duration_ms=500, level_dbfs=-12.5)
    assert plays(actions) == [again.id]


def test_a_resend_waits_for_the_original_playing_and_is_settled_by_it() -> None:
    core, _ = make_core()
    original = play_cmd()
    core.on_command(payload(original))
    core.on_prepared(original.id, duration_ms=500, level_dbfs=-12.5)
    assert core.playing == original.id
    again = resend_of(original)
    actions = core.on_command(payload(again))
    actions += core.on_prepared(again.id, duration_ms=500, level_dbfs=-12.5)
    assert plays(actions) == []
    actions = core.on_play_finished(original.id, played_ms=500)
    assert plays(actions) == []
    messages = {a.message.command_id: a.message for a in actions if isinstance(a, Ack)}
    assert messages[again.id].status == "played"
    assert messages[again.id].already_played_as == original.id
    assert core.playing is None
    assert core.queued == ()


def test_a_resend_plays_when_the_original_playing_is_cut_short() -> None:
    core, _ = make_core()
    original = play_cmd()
    core.on_command(payload(original))
    core.on_prepared(original.id, duration_ms=500, level_dbfs=-12.5)
    again = resend_of(original)
    core.on_command(payload(again))
    core.on_prepared(again.id, duration_ms=500, level_dbfs=-12.5)
    actions = core.on_command(payload(cancel_of(original)))
    assert plays(actions) == [again.id]


def test_what_a_command_supersedes_is_signed() -> None:
    keys = new_keys()
    original = play_cmd()
    signed = keys.sign(resend_of(original))
    assert keys.check(signed)
    other = contract.new_id()
    assert not keys.check(signed.model_copy(update={"supersedes": (other,)}))
    assert not keys.check(signed.model_copy(update={"supersedes": None}))
    # Commands that supersede nothing sign (and carry) the same bytes as before.
    plain = play_cmd()
    assert "supersedes" not in json.loads(plain.signing_bytes())
    assert b"supersedes" not in contract.encode_command(plain)


def test_a_command_cannot_supersede_itself_or_nothing() -> None:
    cmd = command()
    with pytest.raises(ValidationError):
        cmd.model_validate({**cmd.model_dump(), "supersedes": [cmd.id]})
    with pytest.raises(ValidationError):
        cmd.model_validate({**cmd.model_dump(), "supersedes": []})


@pytest.mark.parametrize("order", list(itertools.permutations(("original", "cancel", "resend"))))
def test_in_any_order_the_message_plays_exactly_once(order: tuple[str, ...]) -> None:
    """The original, its cancel and its resend, each played through as soon as it can."""
    core, _ = make_core()
    original = play_cmd()
    made = {
        "original": original,
        "cancel": cancel_of(original).model_copy(update={"scope": SPEAKER}),
        "resend": resend_of(original),
    }
    started: list[str] = []
    for name in order:
        pending = core.on_command(payload(made[name]))
        while pending:
            action = pending.pop(0)
            if isinstance(action, Prepare):
                pending += core.on_prepared(action.command_id, duration_ms=500, level_dbfs=-9)
            elif isinstance(action, Play):
                started.append(action.command.id)
                pending += core.on_play_finished(action.command.id, played_ms=500)
    assert len(started) == 1
    assert core.counters.played == 1


def test_a_restart_forgets_neither_a_cancel_nor_a_resend() -> None:
    """Both are noted in the journal: a speaker that restarts between them and a late copy
    still does not play the stale command."""
    journal = MemoryJournal(keep_payloads=True)
    before, _ = make_core(journal=journal)
    cancelled = play_cmd()
    original = play_cmd()
    again = resend_of(original)
    before.on_command(payload(cancel_of(cancelled).model_copy(update={"scope": SPEAKER})))
    assert plays(play_through(before, again)) == [again.id]

    after, _ = make_core(journal=journal)  # the same journal, on disk in a real speaker
    assert after.recover() == []
    assert acks(after.on_command(payload(cancelled))) == [("failed", FailReason.CANCELLED)]
    assert acks(after.on_command(payload(original))) == [("failed", FailReason.SUPERSEDED)]
    assert after.counters.played == 0


def test_notes_are_forgotten_with_their_commands() -> None:
    journal = MemoryJournal()
    core, clock = make_core(journal=journal)
    original = play_cmd()
    core.on_command(payload(cancel_of(original)))
    assert len(journal) == 2  # the cancel, and the note of it
    assert journal.prune(clock.ms + 120_000) == 2
