"""The preview gate holds only people with a preview running or started within the minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import TooManyRequests
from gateway.web.service import PreviewGate

NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_people_who_previewed_once_are_forgotten_a_minute_later() -> None:
    gate = PreviewGate(concurrency=2, per_minute=3)
    for n in range(500):
        with gate.admit(f"user:{n}", NOON + timedelta(seconds=n)):
            pass
    # At NOON + 499 s only the last minute's people are held, however many came before.
    assert gate.people() <= 61


def test_a_refused_person_leaves_nothing_behind() -> None:
    gate = PreviewGate(concurrency=1, per_minute=1)
    with gate.admit("user:1", NOON):
        pass
    with pytest.raises(TooManyRequests), gate.admit("user:1", NOON + timedelta(seconds=1)):
        pass
    with gate.admit("user:2", NOON + timedelta(minutes=2)):
        assert gate.people() == 1
    with gate.admit("user:1", NOON + timedelta(minutes=2)):
        pass
