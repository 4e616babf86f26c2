"""A speaker's live streams on an asyncio loop, the same for the simulated fleet and the device
agent: frames from the link into the `LivePlayer`, its wake-ups timed, the slots that come due
handed to the horn, each stream's end handed back, and the final ack of a live command given
the stream's report.

The caller owns the `SpeakerCore` and the horn. On `Play` of a live command it calls `started`;
when the chime has played, `join`; on `Stop`, `stop`; every ack goes out through `ack`. Each
stream's end arrives at the `on_end` callback, which tells the core through `settle` (the
agent does so after its player has finished).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from devices.actions import FINAL, Action
from devices.jitter import ADAPTIVE, Adaptive
from devices.live import Finished, LivePlayer, Report, Slot, with_report
from devices.playback import Playback
from wire import contract
from wire.contract import FailReason

Sink = Callable[[list[Slot]], None]


def wall_ms() -> float:
    """Wall-clock milliseconds, as a live frame's ``at_ms`` (the gateway's receipt) is stamped."""
    return time.time() * 1000


def settle(core: Playback, end: Finished) -> list[Action]:
    """The core's actions for the end of a stream: played to its end, or interrupted."""
    if end.played:
        return core.on_play_finished(end.command_id, played_ms=end.played_ms)
    return core.on_play_failed(end.command_id, FailReason.INTERRUPTED)


class LiveDriver:
    """One speaker's `LivePlayer`, driven in real time. Not thread-safe: the loop's thread."""

    def __init__(
        self,
        *,
        on_end: Callable[[Finished], None],
        keep_payloads: bool = False,
        clock: Callable[[], float] = wall_ms,
        adaptive: Adaptive | None = ADAPTIVE,
        offset_ms: Callable[[], int | None] | None = None,
        output_lead_ms: int | Callable[[], int] = 0,
    ) -> None:
        """`offset_ms`: the speaker's clock offset estimate; `output_lead_ms`: how long after
        its slot the horn sounds a frame. Both for the mouth-to-horn figures of the reports."""
        self.player = LivePlayer(
            keep_payloads=keep_payloads,
            adaptive=adaptive,
            offset_ms=offset_ms,
            output_lead_ms=output_lead_ms,
        )
        self._on_end = on_end
        self._clock = clock
        self._sink: Sink | None = None
        self._live_ids: set[str] = set()
        self._wake: tuple[float, asyncio.TimerHandle] | None = None

    @property
    def playing(self) -> str | None:
        """The command whose stream plays now (after its chime)."""
        return self.player.playing

    def started(self, command: contract.Command) -> None:
        """`Play` of a command: a live one's final ack will carry its stream's report."""
        if command.live is not None:
            self._live_ids.add(command.id)

    def ack(self, message: contract.Ack) -> contract.Ack:
        """The ack to publish: a live command's final one with what was heard of the stream."""
        if message.status in FINAL and message.command_id in self._live_ids:
            self._live_ids.discard(message.command_id)
            return with_report(message, self.player.reports.get(message.command_id))
        return message

    def join(self, command: contract.Command, sink: Sink | None = None) -> None:
        """The chime has played: play the stream, handing each slot to `sink` when it is due."""
        self._sink = sink
        self._after(self.player.join(command, self._clock()))

    def frame(self, payload: bytes) -> None:
        """A payload on a live topic."""
        now = self._clock()
        self._pour(now)
        self._after(self.player.on_frame(payload, now))

    def pour(self) -> None:
        """Hand the slots due now to the sink (a horn that plays sound calls this every frame)."""
        self._pour(self._clock())

    def stop(self, command_id: str) -> Report | None:
        """Leave the stream of `command_id` (pre-empted, cancelled, its player failed)."""
        if self.player.playing != command_id:
            return None
        self._sink = None
        return self.player.leave()

    def halt(self) -> None:
        if self._wake is not None:
            self._wake[1].cancel()
            self._wake = None
        self._sink = None
        self.player.leave()

    def _pour(self, now: float) -> None:
        if self._sink is not None:
            slots = self.player.due(now)
            if slots:
                self._sink(slots)

    def _after(self, finished: list[Finished]) -> None:
        for end in finished:
            if self.player.playing is None:
                self._sink = None
            self._on_end(end)
        wake = self.player.wake_at_ms
        if wake is not None and (self._wake is None or wake < self._wake[0]):
            if self._wake is not None:
                self._wake[1].cancel()
            delay = max(0.0, (wake - self._clock()) / 1000)
            self._wake = (wake, asyncio.get_running_loop().call_later(delay, self._woken))

    def _woken(self) -> None:
        self._wake = None
        now = self._clock()
        self._pour(now)
        self._after(self.player.on_tick(now))
