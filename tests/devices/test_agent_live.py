"""The device agent plays live: the chime, then the stream through the jitter buffer, into a real
player command; and bad streams and bad players end with a clear ack."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from devices.live_output import OpusDecoder
from devices.player import CommandPlayer
from devices.sound import decode_sound
from gateway.live.ingest import PcmIngest
from tests.devices.commands import audio, command, opus_clip
from tests.devices.observer import Observer
from tests.devices.test_agent import agent_config, running, statuses
from wire import contract
from wire.contract import EndReason, LiveFrame, LiveKind

CHIME = opus_clip(0.3, freq=660.0)


def _talk(seconds: float) -> list[bytes]:
    """A rising tone as the gateway sends it: 20 ms Opus packets."""
    t = np.arange(round(16000 * seconds)) / 16000
    wave = 8000 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    return PcmIngest(16000, 24_000).feed(wave.astype("<i2").tobytes())


def _decoded(packets: list[bytes]) -> bytes:
    decoder = OpusDecoder(16000)
    return b"".join(decoder.decode(p) for p in packets)


class Talk:
    """One live broadcast to the test speaker's village: its start command and its frames."""

    def __init__(self, observer: Observer, city: str, **stream: int) -> None:
        self.stream = contract.LiveStream(
            session=secrets.token_hex(16),
            key=contract.new_live_key(),
            jitter_ms=stream.get("jitter_ms", 200),
            stall_ms=stream.get("stall_ms", 1000),
            idle_ms=stream.get("idle_ms", 10_000),
        )
        self.command = command(
            city=city,
            at_ms=contract.now_ms(),
            refs=(audio(CHIME, duration_ms=300),),
            scope=contract.Scope(kind="village", ids=("v1",)),
            live=self.stream,
        )
        self._observer = observer
        self._topic = contract.live_topic_village(city, "v1")

    async def start(self) -> None:
        await self._observer.publish(
            contract.command_topic_village(self.command.city, "v1"), self.command
        )

    async def frame(
        self, seq: int, payload: bytes, *, kind: LiveKind = LiveKind.AUDIO, flags: int = 0
    ) -> None:
        frame = LiveFrame(kind, flags, self.stream.session, seq, contract.now_ms(), payload)
        await self._observer.publish(
            self._topic, contract.encode_live_frame(frame, self.stream.key_bytes())
        )

    async def send(
        self, packets: list[bytes], order: list[int] | None = None, *, paced: bool
    ) -> None:
        """Every frame, at the pace of speech on an absolute schedule, or all at once."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, seq in enumerate(order if order is not None else range(len(packets))):
            if paced:
                await asyncio.sleep(max(0.0, start + index * 0.02 - loop.time()))
            await self.frame(seq, packets[seq], flags=contract.LIVE_START_FLAG if seq == 0 else 0)

    async def end(self, last_seq: int) -> None:
        await self.frame(last_seq, b"", kind=LiveKind.END, flags=int(EndReason.STOPPED))


def test_a_lost_frame_is_concealed_by_the_last_sound_fading_to_silence() -> None:
    packets = _talk(0.1)
    decoder = OpusDecoder(16000)
    assert decoder.decode(packets[0])
    concealed = [np.frombuffer(decoder.decode(None), dtype="<i2") for _ in range(4)]
    assert [len(c) for c in concealed] == [320] * 4
    peaks = [int(np.abs(c).max()) for c in concealed]
    assert peaks[0] > peaks[1] > peaks[2] > 0 == peaks[3]
    assert len(decoder.decode(b"")) == 640, "an empty packet is concealed too"
    assert decoder.decode(packets[1]), "and the stream goes on"
    assert decoder.concealed == 5


def sink(path: Path) -> list[str]:
    """A player command that writes the PCM it is given to `path`."""
    return ["sh", "-c", f"cat >> {shlex.quote(str(path))}"]


@pytest.fixture
def city() -> str:
    return f"l{secrets.token_hex(3)}"


@pytest.fixture
async def observer(mqtt_url: str, city: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, city) as watching:
        yield watching


def ended(observer: Observer, command_id: str) -> Callable[[], bool]:
    return lambda: any(a.status.value in ("played", "failed") for a in observer.of(command_id))


async def _playing(observer: Observer, talk: Talk) -> None:
    await talk.start()
    await observer.until(lambda: ("playing", None) in statuses(observer, talk.command.id))


async def test_a_live_talk_plays_after_its_chime_into_the_player(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    out = tmp_path / "horn.pcm"
    config = agent_config(mqtt_url, city, f"{city}-s1", tmp_path / "journal.sqlite")
    packets = _talk(1.0)
    talk = Talk(observer, city)
    async with running(config, CommandPlayer(sink(out))) as agent:  # type: ignore[arg-type]
        await observer.until(lambda: agent.link.online)
        await _playing(observer, talk)
        await observer.until(lambda: agent.streams.playing == talk.command.id)
        await talk.send(packets, paced=True)
        await talk.end(len(packets) - 1)
        await observer.until(ended(observer, talk.command.id))
    assert [s for s, _ in statuses(observer, talk.command.id)] == ["received", "playing", "played"]
    final = observer.of(talk.command.id)[-1]
    assert (final.frames_received, final.frames_lost) == (len(packets), 0)
    assert final.played_ms == len(packets) * 20
    heard = out.read_bytes()
    chime = decode_sound(CHIME).pcm.samples
    assert heard.startswith(chime), "the chime first"
    assert _decoded(packets) in heard[len(chime) :], "then every frame, in order"


async def test_frames_out_of_order_and_faster_than_real_time_play_in_order(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    out = tmp_path / "horn.pcm"
    config = agent_config(mqtt_url, city, f"{city}-s1", tmp_path / "journal.sqlite")
    packets = _talk(1.0)
    # Neighbours swapped, all at once: the buffer puts them back in order and plays them at
    # the pace of speech.
    order = [0]
    for seq in range(1, len(packets) - 1, 2):
        order += [seq + 1, seq]
    order += [s for s in range(len(packets)) if s not in order]
    talk = Talk(observer, city)
    async with running(config, CommandPlayer(sink(out))) as agent:  # type: ignore[arg-type]
        await observer.until(lambda: agent.link.online)
        await _playing(observer, talk)
        await observer.until(lambda: agent.streams.playing == talk.command.id)
        await talk.send(packets, order, paced=False)
        await talk.end(len(packets) - 1)
        await observer.until(ended(observer, talk.command.id))
    final = observer.of(talk.command.id)[-1]
    assert final.status.value == "played"
    assert (final.frames_received, final.frames_lost) == (len(packets), 0)
    assert _decoded(packets) in out.read_bytes()


async def test_a_stream_whose_frames_stop_ends_interrupted_and_the_next_message_plays(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    out = tmp_path / "horn.pcm"
    config = agent_config(mqtt_url, city, f"{city}-s1", tmp_path / "journal.sqlite")
    packets = _talk(0.2)
    talk = Talk(observer, city, stall_ms=500)
    recorded = command(
        city=city,
        at_ms=contract.now_ms(),
        refs=(audio(opus_clip(0.3)),),
        scope=contract.Scope(kind="village", ids=("v1",)),
    )
    async with running(config, CommandPlayer(sink(out))) as agent:  # type: ignore[arg-type]
        await observer.until(lambda: agent.link.online)
        await _playing(observer, talk)
        await observer.until(lambda: agent.streams.playing == talk.command.id)
        await talk.send(packets, paced=True)  # and then nothing: the network is gone
        await observer.until(ended(observer, talk.command.id))
        assert agent.streams.playing is None
        await observer.publish(contract.command_topic_village(city, "v1"), recorded)
        await observer.until(ended(observer, recorded.id))
    final = observer.of(talk.command.id)[-1]
    assert (final.status.value, final.reason) == ("failed", "interrupted")
    assert (final.frames_received, final.frames_lost) == (len(packets), 0)
    assert statuses(observer, recorded.id)[-1] == ("played", None)
    heard = out.read_bytes()
    assert _decoded(packets) in heard
    assert heard.endswith(decode_sound(opus_clip(0.3)).pcm.samples)


@pytest.mark.parametrize("behaviour", ["fails", "hangs"])
async def test_a_player_that_fails_or_hangs_ends_the_talk_with_player_error(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path, behaviour: str
) -> None:
    marker = f"maeul-player-{secrets.token_hex(4)}"
    code = "import sys; sys.exit(3)" if behaviour == "fails" else "import time; time.sleep(60)"
    player = CommandPlayer([sys.executable, "-c", f"{code}  # {marker}"], stop_grace_s=5)
    config = agent_config(mqtt_url, city, f"{city}-s1", tmp_path / "journal.sqlite")
    talk = Talk(observer, city)
    async with running(config, player) as agent:  # type: ignore[arg-type]
        await observer.until(lambda: agent.link.online)
        await talk.start()
        await observer.until(ended(observer, talk.command.id))
        assert agent.streams.playing is None
        assert not agent.core.playing
    assert statuses(observer, talk.command.id)[-1] == ("failed", "player_error")
    ps = await asyncio.create_subprocess_exec("ps", "-eo", "args", stdout=asyncio.subprocess.PIPE)
    listed, _ = await ps.communicate()
    assert marker not in listed.decode(), "the player is stopped"
