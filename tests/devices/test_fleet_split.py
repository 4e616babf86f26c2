"""Splitting a simulated fleet over several processes: every device in exactly one share."""

from __future__ import annotations

import random

import pytest

from devices.simulator_config import DEVICES_PER_PROCESS, SimSpeaker, processes_for, share_of
from wire.contract import SpeakerIdentity


def _fleet(count: int) -> list[SimSpeaker]:
    speakers = [
        SimSpeaker(
            SpeakerIdentity(
                city="c",
                district=f"d{i % 22:02d}",
                village=f"d{i % 22:02d}-v{i % 568:03d}",
                speaker=f"d{i % 22:02d}-v{i % 568:03d}-h{i}",
            ),
            kind="household_receiver" if i % 3 else "loudspeaker",
        )
        for i in range(count)
    ]
    random.Random(count).shuffle(speakers)  # the API's order is no promise
    return speakers


@pytest.mark.parametrize(("count", "parts"), [(2_001, 4), (2_001, 3), (8, 2), (3, 5), (1, 1)])
def test_every_device_is_in_exactly_one_share(count: int, parts: int) -> None:
    fleet = _fleet(count)
    shares = [share_of(fleet, part, parts) for part in range(parts)]

    codes = [s.identity.speaker for share in shares for s in share]
    assert sorted(codes) == sorted(s.identity.speaker for s in fleet)
    assert len(set(codes)) == count
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_each_process_finds_the_same_share_whatever_order_the_fleet_came_in() -> None:
    fleet = _fleet(500)
    again = list(reversed(fleet))
    assert share_of(fleet, 1, 3) == share_of(again, 1, 3)


@pytest.mark.parametrize(("part", "parts"), [(2, 2), (-1, 2), (0, 0)])
def test_a_part_outside_the_split_is_refused(part: int, parts: int) -> None:
    with pytest.raises(ValueError, match="part"):
        share_of(_fleet(4), part, parts)


def test_the_process_count_grows_with_the_fleet() -> None:
    assert processes_for(0) == 1
    assert processes_for(691) == 1
    assert processes_for(DEVICES_PER_PROCESS) == 1
    assert processes_for(DEVICES_PER_PROCESS + 1) == 2
    assert processes_for(19_856) == 4
