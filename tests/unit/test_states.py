"""The delivery transition table: every legal move, every illegal one, and the self-loops."""

from __future__ import annotations

import itertools

import pytest

from gateway.deliveries.states import (
    ACTIVE,
    HEARD,
    TERMINAL,
    TRANSITIONS,
    Event,
    InvalidTransition,
    State,
    next_state,
)

LEGAL = [(s, e, t) for s, moves in TRANSITIONS.items() for e, t in moves.items()]
ILLEGAL = [(s, e) for s, e in itertools.product(State, Event) if e not in TRANSITIONS.get(s, {})]


@pytest.mark.parametrize(("state", "event", "target"), LEGAL)
def test_every_legal_move(state: State, event: Event, target: State) -> None:
    assert next_state(state, event) is target


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_illegal_move_raises_and_names_both(state: State, event: Event) -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_state(state, event)
    assert state.value in str(caught.value)
    assert event.value in str(caught.value)


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)


def test_duplicates_are_self_loops() -> None:
    for state, event in [
        (State.SENT, Event.PUBLISHED),
        (State.RECEIVED, Event.RECEIVED),
        (State.PLAYING, Event.PLAYING),
        (State.PLAYED, Event.PLAYED),
        (State.FAILED, Event.FAILED),
    ]:
        assert next_state(state, event) is state


def test_late_acks_never_move_backwards() -> None:
    order = [State.QUEUED, State.SENT, State.RECEIVED, State.PLAYING, State.PLAYED]
    rank = {s: i for i, s in enumerate(order)}
    for state in order:
        for event in (Event.PUBLISHED, Event.RECEIVED, Event.PLAYING, Event.PLAYED):
            target = next_state(state, event)
            if target in rank:
                assert rank[target] >= rank[state], (state, event, target)


def test_terminal_states_stay_terminal_except_a_late_play() -> None:
    for state in TERMINAL:
        for event in Event:
            target = next_state(state, event)
            assert target is state or (event is Event.PLAYED and target is State.PLAYED_LATE)


@pytest.mark.parametrize("state", [State.FAILED, State.EXPIRED, State.CANCELLED])
def test_a_play_after_the_delivery_ended_is_played_late_never_played(state: State) -> None:
    """One truth after the gateway gives up: the officer acted on 'failed'; a speaker that plays
    anyway is recorded as such, not as an on-time play."""
    assert next_state(state, Event.PLAYED) is State.PLAYED_LATE
    for event in Event:
        assert next_state(State.PLAYED_LATE, event) is State.PLAYED_LATE
    assert State.PLAYED_LATE in TERMINAL
    assert {State.PLAYED, State.PLAYED_LATE} == HEARD


def test_no_move_leads_from_an_ended_delivery_to_played() -> None:
    for state in TERMINAL - {State.PLAYED}:
        assert State.PLAYED not in TRANSITIONS[state].values(), state


def test_a_played_ack_overtaking_the_publish_note_is_kept() -> None:
    assert next_state(State.QUEUED, Event.PLAYED) is State.PLAYED
    assert next_state(State.PLAYED, Event.PUBLISHED) is State.PLAYED


def test_active_and_terminal_partition_the_states() -> None:
    assert set(State) == ACTIVE | TERMINAL
    assert not ACTIVE & TERMINAL


def test_rejection_fails_and_timeout_expires() -> None:
    assert next_state(State.SENT, Event.REJECTED) is State.FAILED
    assert next_state(State.SENT, Event.TIMED_OUT) is State.EXPIRED
    assert next_state(State.PLAYING, Event.TIMED_OUT) is State.FAILED


# --- pre-emption ----------------------------------------------------------------------------


def test_preempted_is_open() -> None:
    assert State.PREEMPTED in ACTIVE
    assert State.PREEMPTED not in TERMINAL


@pytest.mark.parametrize("state", [State.SENT, State.RECEIVED, State.PLAYING, State.PREEMPTED])
def test_a_preempted_ack_moves_an_open_delivery_to_preempted(state: State) -> None:
    assert next_state(state, Event.PREEMPTED) is State.PREEMPTED


def test_a_preempted_delivery_plays_again_from_the_start() -> None:
    state = State.SENT
    for event in (Event.RECEIVED, Event.PLAYING, Event.PREEMPTED, Event.PLAYING, Event.PLAYED):
        state = next_state(state, event)
    assert state is State.PLAYED
    assert next_state(State.PREEMPTED, Event.PLAYED) is State.PLAYED  # "playing" was lost


@pytest.mark.parametrize(
    ("event", "target"),
    [
        (Event.FAILED, State.FAILED),  # its turn came after its expiry, on the speaker
        (Event.REJECTED, State.FAILED),
        (Event.EXPIRED, State.EXPIRED),  # the broadcast expired while it waited
        (Event.TIMED_OUT, State.EXPIRED),
        (Event.CANCELLED, State.CANCELLED),
    ],
)
def test_a_preempted_delivery_can_still_end_without_playing(event: Event, target: State) -> None:
    assert next_state(State.PREEMPTED, event) is target


@pytest.mark.parametrize("event", [Event.PUBLISHED, Event.RECEIVED, Event.PREEMPTED])
def test_repeated_and_late_events_leave_a_preempted_delivery_alone(event: Event) -> None:
    assert next_state(State.PREEMPTED, event) is State.PREEMPTED


def test_a_late_preempted_ack_never_reopens_a_finished_delivery() -> None:
    for state in TERMINAL:
        assert next_state(state, Event.PREEMPTED) is state
    for state in (State.FAILED, State.EXPIRED, State.CANCELLED):
        assert next_state(state, Event.PLAYED) is State.PLAYED_LATE, "played, but after the end"


def test_the_readme_table_lists_every_state_and_no_other() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Delivery states", 1)[1].split("\n\n", 2)[1]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert listed == [s.value for s in State]


def test_an_unknown_key_refusal_never_ends_a_delivery() -> None:
    # The speaker could not trust the key yet: asked again under the current key, not failed.
    for state in ACTIVE:
        assert next_state(state, Event.KEY_REFUSED) is state
    for state in TERMINAL:
        assert next_state(state, Event.KEY_REFUSED) is state
