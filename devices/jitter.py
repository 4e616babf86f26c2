"""How long a speaker's jitter buffer holds a live stream: its adaptive target.

Each arriving audio frame gives a relative delay ``d = arrival - seq * frame_ms``: the network's
delay plus a constant, the same for every frame of one talk spurt (a pause shifts it). Over a
window of recent frames the smallest ``d`` of each spurt is its fastest path; the target is how
much later than that a frame may come and still play: a high percentile of ``d - min(d)`` plus
a margin, between a floor and a ceiling.

The buffer grows at once when a frame comes after its slot (by how late it was, plus the
margin: that slot was already concealed, so the later slots moving on costs a silence at a
point the listener already heard a gap). It shrinks only where nothing is said: at the start
of a talk spurt, when the playout takes a new anchor anyway, and then by half of the excess at
a time, so one quiet stretch of network does not undo what a stall taught.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

_WINDOW_FRAMES: Final = 500  # ten seconds of 20 ms frames


@dataclass(frozen=True, slots=True)
class Adaptive:
    """The bounds and the appetite of an adaptive jitter buffer, in milliseconds."""

    floor_ms: int = 30
    ceiling_ms: int = 400
    margin_ms: int = 10
    # The share of recent frames the target must cover without growing.
    quantile: float = 0.98
    window_frames: int = _WINDOW_FRAMES

    def clamp(self, target_ms: float) -> float:
        return min(float(self.ceiling_ms), max(float(self.floor_ms), target_ms))


ADAPTIVE: Final = Adaptive()


class DelayWindow:
    """Relative delays of the last frames, and the target they call for."""

    def __init__(self, policy: Adaptive) -> None:
        self.policy = policy
        self._delays: deque[tuple[int, float]] = deque(maxlen=policy.window_frames)
        self._spurt = 0

    def __len__(self) -> int:
        return len(self._delays)

    def new_spurt(self) -> None:
        """The frames from now on are of a new talk spurt (their delays have a new base)."""
        self._spurt += 1

    def observe(self, seq: int, now: float, frame_ms: int) -> None:
        """Note a frame's arrival."""
        self._delays.append((self._spurt, now - seq * frame_ms))

    def wanted(self) -> float:
        """The target the recent frames call for (the floor before any arrived)."""
        if not self._delays:
            return float(self.policy.floor_ms)
        fastest: dict[int, float] = {}
        for spurt, delay in self._delays:
            fastest[spurt] = min(delay, fastest.get(spurt, delay))
        spread = sorted(delay - fastest[spurt] for spurt, delay in self._delays)
        index = min(len(spread) - 1, int(self.policy.quantile * len(spread)))
        return self.policy.clamp(spread[index] + self.policy.margin_ms)

    def grown(self, target_ms: float, late_by_ms: float) -> float:
        """The target after a frame came `late_by_ms` after its slot."""
        return self.policy.clamp(max(target_ms + late_by_ms + self.policy.margin_ms, self.wanted()))

    def settled(self, target_ms: float) -> float:
        """The target at a talk spurt's start: up to what is wanted at once, down by half."""
        wanted = self.wanted()
        if wanted >= target_ms:
            return wanted
        return self.policy.clamp(target_ms - (target_ms - wanted) / 2)
