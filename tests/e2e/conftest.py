"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.e2e.rogue import RogueSpeaker
from tests.e2e.wire_check import Document, WireRecorder
from wire import contract

Report = Callable[[str, object], None]

# What tests/conftest.py falls back to when it cannot start a private Mosquitto.
SHARED_BROKER = "mqtt://127.0.0.1:1883"
# The prefix of the figures the fault scenarios report (printed at the end of the run).
FIGURES = "faults: "


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Report:
    """Report a fault scenario's lost, duplicated and stale deliveries: kept with the test's
    result (and in the JUnit XML), and listed after the run whether it passed or failed."""

    def record(scenario: str, tally: object) -> None:
        record_property(f"{FIGURES}{scenario}", str(tally))

    return record


@pytest.fixture(scope="session")
def asyncapi() -> Document:
    return Document()


@pytest.fixture(autouse=True)
async def wire_follows_the_document(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, asyncapi: Document
) -> AsyncIterator[None]:
    """Every message on the test broker during an end-to-end test follows
    openapi/asyncapi.yaml. Rogue speakers (tests/e2e/rogue.py) misbehave on purpose: their acks
    are left out."""
    mqtt_url: str = request.getfixturevalue("mqtt_url")
    if mqtt_url == SHARED_BROKER and os.environ.get("PYTEST_XDIST_WORKER"):
        # The machine's own broker, shared by parallel workers: another worker's rogue speakers
        # would be counted here. Every run with a private Mosquitto makes the check.
        yield
        return
    rogues: set[str] = set()
    original = RogueSpeaker.__init__

    def remember(self: RogueSpeaker, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        rogues.add(contract.ack_topic(self.identity.city, self.identity.speaker))

    monkeypatch.setattr(RogueSpeaker, "__init__", remember)
    async with WireRecorder(mqtt_url) as wire:
        yield
    problems = [
        problem
        for seen in wire.seen
        if seen.topic not in rogues
        for problem in asyncapi.problems(seen)
    ]
    assert not problems, f"{len(problems)} messages off the AsyncAPI document:\n" + "\n".join(
        problems[:20]
    )
