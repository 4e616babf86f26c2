"""The ack intake's memories stay within their bounds however many broadcasts go by."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.deliveries import intake as intake_module
from gateway.deliveries.intake import Intake
from wire import contract

BOUND = 200


def _acks(broadcasts: int, speakers: int) -> list[tuple[str, contract.Ack]]:
    found = []
    for b in range(broadcasts):
        command = f"{b:032x}"
        for s in range(speakers):
            for status, at in (("received", 1), ("played", 2)):
                found.append(
                    (
                        f"sp{s}",
                        contract.Ack(
                            command_id=command,
                            broadcast_id=command,
                            speaker=f"sp{s}",
                            status=contract.AckStatus(status),
                            at_ms=1_700_000_000_000 + b * 1000 + at,
                        ),
                    )
                )
    return found


def test_recent_acks_and_per_command_counts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_module, "RECENT_ACKS_MAX", BOUND)
    clock = FakeClock()
    intake = Intake(cast(Any, None), FakeBus(), clock, city_id=1, city_code="c", batch_max=100)
    acks = _acks(broadcasts=40, speakers=10)  # 400 commands, 800 acks: four times the bound
    for start in range(0, len(acks), 20):
        sifted = intake._sift(acks[start : start + 20], clock.now())
        intake._remember(sifted)
        held = intake.held()
        assert held["recent_acks"] <= BOUND
        assert held["per_command"] <= BOUND
    assert intake.held()["recent_acks"] == BOUND, "full, not emptied"
    # A repeat of a recent ack is still recognised once older ones were let go.
    again = intake._sift(acks[-1:], clock.now())
    assert again.counts["duplicate_acks"] == 1
