"""The device agent's live sound: the chime, then the stream's 20 ms slots decoded from Opus (a
lost one concealed), written into the player command as one continuous PCM stream.

The stream joins when the chime has nearly played, as the simulated speakers join when theirs
has. From then on the player is kept fed a lead ahead of real time, with silence before the
first word and in pauses, so the sound card never runs dry, and each slot is written to be heard
that lead after it is due: the talk keeps its own timing, pauses included. A player that exits
before the end, or stops taking its audio, fails the stream with `PlayerError` (the command is
acked failed/player_error) and is stopped.

The lead starts small and grows when the agent could not keep the player fed (`devices.lead`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import av
import numpy as np

from audio.playback import Pcm
from devices.lead import FRAME_MS, OutputLead
from devices.live import Finished, Slot
from devices.live_driver import LiveDriver, wall_ms
from devices.player import PlayerError, PlayerStream
from wire import contract

# How often the stream is poured into the player, and the pauses filled: a slot waits at most
# this long after it is due before it is written.
_TICK_MS: Final = FRAME_MS / 2
# A player holding back this much more audio than is still to play has stopped reading.
STALL_MS: Final = 2000
# After the last slot, the player's time to play out what it holds and exit.
FINISH_SLACK_MS: Final = 10_000
# Lost frames in a row concealed by the last sound, fading; then silence.
_CONCEALED_IN_A_ROW: Final = 3
_OPUS_RATE: Final = 48000

log = logging.getLogger(__name__)


class OpusDecoder:
    """20 ms Opus packets in, 16-bit mono PCM at `rate` out. A missing packet (or one that does
    not decode) is concealed: the last 20 ms again, fading out over three slots, then silence.
    Decoding a packet takes microseconds: it runs on the loop, in step with the slots."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        decoder: Any = av.CodecContext.create("libopus", "r")
        decoder.sample_rate = _OPUS_RATE
        decoder.layout = "mono"
        self._decoder = decoder
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._last = np.zeros(self.frame_samples, dtype="<i2")
        self._lost = 0
        self.concealed = 0

    def decode(self, packet: bytes | None) -> bytes:
        if packet:  # an empty packet would end the decoder's stream: concealed instead
            pcm = self._decode(packet)
            if pcm is not None:
                self._lost = 0
                if pcm.size:
                    self._last = np.concatenate([self._last, pcm])[-self.frame_samples :]
                return pcm.tobytes()
        return self._conceal()

    def _decode(self, packet: bytes) -> np.ndarray[Any, np.dtype[np.int16]] | None:
        try:
            frames = self._decoder.decode(av.Packet(packet))
            parts = [
                np.asarray(out.to_ndarray(), dtype="<i2").reshape(-1)
                for frame in frames
                for out in self._resampler.resample(frame)
            ]
        except (av.error.FFmpegError, ValueError):
            return None
        return np.concatenate(parts) if parts else np.zeros(0, dtype="<i2")

    def _conceal(self) -> bytes:
        self.concealed += 1
        self._lost += 1
        if self._lost > _CONCEALED_IN_A_ROW:
            return bytes(2 * self.frame_samples)
        start = 0.5 ** (self._lost - 1)
        end = 0.0 if self._lost == _CONCEALED_IN_A_ROW else start / 2
        gain = np.linspace(start, end, self.frame_samples, endpoint=False)
        return (self._last.astype(np.float64) * gain).round().astype("<i2").tobytes()


class LiveOutput:
    """One live command's sound into one player process. Times are wall-clock milliseconds, as
    the slots' (`devices.live_driver.wall_ms`): each slot is written to be heard `lead.ms` after
    it is due, so the sound keeps the stream's own timeline."""

    def __init__(
        self,
        stream: PlayerStream,
        *,
        rate: int,
        lead: OutputLead | None = None,
        clock: Callable[[], float] = wall_ms,
    ) -> None:
        self._stream = stream
        self._decoder = OpusDecoder(rate)
        self._rate = rate
        self._clock = clock
        self.lead = OutputLead() if lead is None else lead
        self._until = clock()  # when what was written will have played
        # True once the stream joined (the chime nearly played): only then does a player that ran
        # dry teach the lead.
        self.streaming = False
        self._next_slot_ms: float | None = None  # when the talk spurt's next slot is due

    @property
    def ahead_ms(self) -> float:
        """Written audio still to play."""
        return max(0.0, self._until - self._clock())

    async def play(
        self,
        chime: Pcm,
        driver: LiveDriver,
        command: contract.Command,
        ended: asyncio.Future[Finished],
    ) -> Finished:
        """The chime, then the stream of `command` until `ended` (set by the driver's
        `on_end`); returns once the player has played it all and exited."""
        try:
            self._write(chime.samples)
            while self.ahead_ms > self.lead.ms:
                self._check()
                await asyncio.sleep(FRAME_MS / 1000)
            driver.join(command, self.slots)
            self.streaming = True
            while not ended.done():
                driver.pour()
                self.keep_fed()
                self._check()
                await asyncio.wait([ended], timeout=_TICK_MS / 1000)
            await self._stream.finish((self.ahead_ms + FINISH_SLACK_MS) / 1000)
        except BaseException:
            await self._stream.abort()
            raise
        finally:
            dry = self.lead.talk_ended(spoke=self._next_slot_ms is not None)
            if dry:
                log.warning(
                    "command %s: the player ran dry %d times; live lead now %d ms",
                    *(command.id, dry, self.lead.heard_after_ms()),
                )
        return ended.result()

    def slots(self, slots: list[Slot]) -> None:
        for slot in slots:
            # The next slot of a spurt follows the last at once, even after the player ran dry
            # and the lead grew (a second gap in the same word otherwise); the first word, or
            # the first after a pause, waits in silence until its time.
            follows = self._next_slot_ms is not None and abs(slot.at_ms - self._next_slot_ms) < 1
            gap = slot.at_ms + self.lead.ms - max(self._until, self._clock())
            if not follows and gap >= 1:
                self._silence(gap)
            self._write(self._decoder.decode(slot.payload))
            self._next_slot_ms = slot.at_ms + FRAME_MS

    def _write(self, pcm: bytes) -> None:
        if not pcm:
            return
        now = self._clock()
        if now > self._until:
            # Behind real time (the player ran dry): what is written now plays from now, and
            # from now on the player is kept a frame fuller.
            if self.streaming:
                self.lead.grow()
            self._until = now
        self._until += len(pcm) / 2 / self._rate * 1000
        self._stream.write(pcm)

    def _silence(self, ms: float) -> None:
        self._write(bytes(2 * round(ms * self._rate / 1000)))

    def keep_fed(self) -> None:
        """Before the first word and in pauses, silence up to the lead (called every tick)."""
        # In a talk spurt its slots feed the player (a lost frame is a concealed slot): silence
        # there would be a gap in a word. Before the first word and in pauses, silence keeps it
        # full to the lead, never past it: a slot still to come is due at `now` at the earliest,
        # and is written to be heard `lead.ms` later.
        if self._next_slot_ms is not None and self._clock() < self._next_slot_ms + _TICK_MS:
            return
        short = self.lead.ms - self.ahead_ms
        if short >= 1:
            self._silence(short)

    def _check(self) -> None:
        code = self._stream.exited
        if code is not None:
            raise PlayerError(f"the player exited (status {code}) before the stream ended")
        held_ms = self._stream.backlog_bytes / 2 / self._rate * 1000
        if held_ms > self.ahead_ms + STALL_MS:
            raise PlayerError(f"the player stopped taking its audio ({held_ms:.0f} ms held back)")
