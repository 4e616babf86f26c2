"""The agent's live lead: small at first, a frame fuller each time the player ran dry, half a
frame back after a talk without one, never below where the installer set it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.agent_config import ConfigError, load_config
from devices.lead import FRAME_MS, LEAD, OutputLead
from devices.live import Slot
from devices.live_output import LiveOutput


class _Stream:
    """A player that takes everything at once and never exits."""

    def __init__(self) -> None:
        self.written = 0

    @property
    def backlog_bytes(self) -> int:
        return 0

    @property
    def exited(self) -> int | None:
        return None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    async def finish(self, timeout_s: float) -> None:
        return None

    async def abort(self) -> None:
        return None


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _output(lead: OutputLead) -> tuple[LiveOutput, _Clock]:
    clock = _Clock()
    output = LiveOutput(_Stream(), rate=16000, lead=lead, clock=clock)
    output.streaming = True
    return output, clock


def test_the_lead_starts_at_its_floor_and_grows_a_frame_per_dry_run_up_to_its_ceiling() -> None:
    lead = OutputLead()
    assert lead.ms == LEAD.floor_ms
    lead.grow()
    assert lead.ms == LEAD.floor_ms + FRAME_MS
    for _ in range(100):
        lead.grow()
    assert lead.ms == LEAD.ceiling_ms
    assert lead.ran_dry == 101


def test_a_talk_without_a_dry_run_gives_back_half_a_frame_never_below_the_start() -> None:
    lead = OutputLead(80)
    lead.grow()
    lead.talk_ended()  # the dry run was in this talk: it keeps its frame
    assert lead.ms == 100
    lead.talk_ended()
    assert lead.ms == 90
    for _ in range(10):
        lead.talk_ended()
    assert lead.ms == 80


def test_slots_written_in_time_keep_the_lead() -> None:
    lead = OutputLead()
    output, clock = _output(lead)
    for seq in range(50):
        output.slots([Slot(seq, None, at_ms=clock.now)])
        clock.now += FRAME_MS
    assert lead.ms == LEAD.floor_ms
    assert lead.ran_dry == 0


def test_a_write_that_finds_the_player_run_dry_grows_the_lead_by_a_frame() -> None:
    lead = OutputLead()
    output, clock = _output(lead)
    output.slots([Slot(0, None, at_ms=clock.now)])
    clock.now += LEAD.floor_ms + 3 * FRAME_MS  # the board was busy: the player ran out
    output.slots([Slot(1, None, at_ms=clock.now)])
    assert lead.ran_dry == 1
    assert lead.ms == LEAD.floor_ms + FRAME_MS
    # Silence until the slot's time plus the lead, then the slot: fed ahead again.
    assert output.ahead_ms == pytest.approx(LEAD.floor_ms + FRAME_MS)


def test_the_chime_written_before_the_stream_joins_teaches_nothing() -> None:
    lead = OutputLead()
    clock = _Clock()
    output = LiveOutput(_Stream(), rate=16000, lead=lead, clock=clock)
    clock.now += 500
    output.slots([Slot(0, None, at_ms=clock.now)])
    assert lead.ran_dry == 0


def test_the_installer_sets_the_starting_lead_within_its_bounds(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text(
        '[broker]\nurl = "mqtt://127.0.0.1:1883"\n'
        '[speaker]\ncity = "c1"\ndistrict = "d1"\nvillage = "v1"\nid = "s1"\n'
        f'[journal]\npath = "{tmp_path / "journal.sqlite"}"\n'
    )
    assert load_config(file, {}).player.live_lead_ms == LEAD.floor_ms
    config = load_config(file, {"MAEUL_AGENT_PLAYER_LIVE_LEAD_MS": "120"})
    assert config.player.live_lead_ms == 120
    assert OutputLead(config.player.live_lead_ms).ms == 120
    with pytest.raises(ConfigError, match="live_lead_ms"):
        load_config(file, {"MAEUL_AGENT_PLAYER_LIVE_LEAD_MS": "5"})


def _tick(output: LiveOutput, clock: _Clock, at: float, *slots: Slot) -> None:
    """One turn of the agent's loop at `at` (ms from the start): the slots due, then the fill."""
    clock.now = 1_000_000.0 + at
    output.slots(list(slots))
    output.keep_fed()


def _slot(seq: int, at: float) -> Slot:
    return Slot(seq, None, at_ms=1_000_000.0 + at)


def test_the_end_of_a_spurt_on_a_board_that_keeps_up_does_not_run_the_player_dry() -> None:
    lead = OutputLead()
    output, clock = _output(lead)
    _tick(output, clock, 0.0)  # a pause: fed to the lead
    _tick(output, clock, 10.0, _slot(0, 10.0))  # the first slot of a spurt, on its tick
    _tick(output, clock, 20.0)
    _tick(output, clock, 30.0, _slot(1, 30.0))  # the last
    for at in (40.0, 50.0, 60.0, 69.9, 80.5):  # ticks a little late, as the loop's are
        _tick(output, clock, at)
    assert lead.ran_dry == 0


def test_after_a_dry_run_the_spurt_goes_on_without_a_second_gap() -> None:
    lead = OutputLead()
    stream = _Stream()
    clock = _Clock()
    output = LiveOutput(stream, rate=16000, lead=lead, clock=clock)
    output.streaming = True
    _tick(output, clock, 0.0)
    _tick(output, clock, 10.0, _slot(0, 10.0))
    _tick(output, clock, 30.0, _slot(1, 30.0))
    # A 50 ms stall: the player ran dry at 90; the slots due meanwhile, then one on time.
    written = stream.written
    _tick(output, clock, 100.0, _slot(2, 50.0), _slot(3, 70.0), _slot(4, 90.0))
    assert lead.ran_dry == 1
    _tick(output, clock, 110.0, _slot(5, 110.0))
    assert stream.written - written == 4 * 2 * 16000 * FRAME_MS // 1000, "the slots, no silence"
