"""The device agent's live sound: the chime, then the stream's 20 ms slots decoded from Opus (a
lost one concealed), written into the player command as one continuous PCM stream.

The stream joins when the chime has nearly played, as the simulated speakers join when theirs
has. From then on the player is kept fed `LEAD_S` ahead of real time, with silence before the
first word and in pauses, so the sound card never runs dry and a slot is heard as soon as it is
due. A player that exits before the end, or stops taking its audio, fails the stream with
`PlayerError` (the command is acked failed/player_error) and is stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import av
import numpy as np

from audio.playback import Pcm
from devices.live import Finished, Slot
from devices.live_driver import LiveDriver
from devices.player import PlayerError, PlayerStream
from wire import contract

FRAME_S: Final = 0.02
# How far ahead of real time the player is kept fed; topped up when it falls to half of it.
LEAD_S: Final = 0.1
# A player holding back this much more audio than is still to play has stopped reading.
STALL_S: Final = 2.0
# After the last slot, the player's time to play out what it holds and exit.
FINISH_SLACK_S: Final = 10.0
# Lost frames in a row concealed by the last sound, fading; then silence.
_CONCEALED_IN_A_ROW: Final = 3
_OPUS_RATE: Final = 48000


class OpusDecoder:
    """20 ms Opus packets in, 16-bit mono PCM at `rate` out. A missing packet (or one that does
    not decode) is concealed: the last 20 ms again, fading out over three slots, then silence.
    Decoding a packet takes microseconds: it runs on the loop, in step with the slots."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frame_samples = rate * round(FRAME_S * 1000) // 1000
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
    """One live command's sound into one player process."""

    def __init__(
        self, stream: PlayerStream, *, rate: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._decoder = OpusDecoder(rate)
        self._rate = rate
        self._clock = clock
        self._until = clock()  # when what was written will have played

    @property
    def ahead_s(self) -> float:
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
            while self.ahead_s > LEAD_S:
                self._check()
                await asyncio.sleep(FRAME_S)
            driver.join(command, self.slots)
            while not ended.done():
                driver.pour()
                self._keep_fed()
                self._check()
                await asyncio.wait([ended], timeout=FRAME_S)
            await self._stream.finish(self.ahead_s + FINISH_SLACK_S)
        except BaseException:
            await self._stream.abort()
            raise
        return ended.result()

    def slots(self, slots: list[Slot]) -> None:
        for slot in slots:
            self._write(self._decoder.decode(slot.payload))

    def _write(self, pcm: bytes) -> None:
        if not pcm:
            return
        now = self._clock()
        self._until = max(self._until, now) + len(pcm) / 2 / self._rate
        self._stream.write(pcm)

    def _keep_fed(self) -> None:
        ahead = self.ahead_s
        if ahead < LEAD_S / 2:
            self._write(bytes(2 * round((LEAD_S - ahead) * self._rate)))

    def _check(self) -> None:
        code = self._stream.exited
        if code is not None:
            raise PlayerError(f"the player exited (status {code}) before the stream ended")
        held_s = self._stream.backlog_bytes / 2 / self._rate
        if held_s > self.ahead_s + STALL_S:
            raise PlayerError(f"the player stopped taking its audio ({held_s:.1f} s held back)")
