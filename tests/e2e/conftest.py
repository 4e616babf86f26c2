"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

Report = Callable[[str, object], None]

# The prefix of the figures the fault scenarios report (printed at the end of the run).
FIGURES = "faults: "


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Report:
    """Report a fault scenario's lost, duplicated and stale deliveries: kept with the test's
    result (and in the JUnit XML), and listed after the run whether it passed or failed."""

    def record(scenario: str, tally: object) -> None:
        record_property(f"{FIGURES}{scenario}", str(tally))

    return record
