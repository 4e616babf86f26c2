"""What a talking client sends, to 20 ms Opus packets; the recording kept of a session."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from gateway.live.ingest import (
    MAX_PASSTHROUGH_BYTES,
    AacIngest,
    NotAudio,
    OpusIngest,
    PcmIngest,
    WebmIngest,
    _Encoder,
    opus_duration_tenths,
)
from gateway.live.recorder import Recorder


def _tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def test_pcm_in_any_chunks_comes_out_as_20_ms_packets() -> None:
    ingest = PcmIngest(16000, 24_000)
    data = _tone(0.5)
    packets: list[bytes] = []
    for offset in range(0, len(data), 777):  # odd sizes: a sample split across messages
        packets += ingest.feed(data[offset : offset + 777])
    assert len(packets) == 25
    assert all(opus_duration_tenths(p) == 200 for p in packets)


def test_20_ms_opus_passes_through_untouched() -> None:
    packets = PcmIngest(16000, 24_000).feed(_tone(0.1))
    ingest = OpusIngest(24_000)
    assert [out for p in packets for out in ingest.feed(p)] == packets
    assert not ingest.blocking


@pytest.mark.parametrize("junk", [b"", b"\xff" * 40, b"\x03"])
def test_bytes_that_are_no_opus_packet_are_not_audio(junk: bytes) -> None:
    with pytest.raises(NotAudio):
        OpusIngest(24_000).feed(junk)


def test_webm_from_a_browser_is_reframed_and_other_containers_refused() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        stream.codec_context.options = {"frame_duration": "60"}
        samples = np.frombuffer(_tone(1.0, 48000), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    data = buffer.getvalue()
    ingest = WebmIngest(24_000)
    packets: list[bytes] = []
    for offset in range(0, len(data), 500):
        packets += ingest.feed(data[offset : offset + 500])
    assert 45 <= len(packets) <= 51
    assert all(opus_duration_tenths(p) == 200 for p in packets)
    with pytest.raises(NotAudio):
        WebmIngest(24_000).feed(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(32))


def _adts(seconds: float, rate: int = 44100) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        samples = np.frombuffer(_tone(seconds, rate), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def test_aac_from_safari_is_transcoded_to_20_ms_packets() -> None:
    data = _adts(1.0)
    ingest = AacIngest(24_000)
    assert ingest.blocking
    packets: list[bytes] = []
    for offset in range(0, len(data), 333):  # frames split across messages
        packets += ingest.feed(data[offset : offset + 333])
    # A second of sound, give or take the AAC encoder's priming and last partial frame.
    assert 46 <= len(packets) <= 53
    assert all(opus_duration_tenths(p) == 200 for p in packets)


@pytest.mark.parametrize("junk", [b"RIFF\x00\x00\x00\x00WAVE", b"\xff\xf1\x50\x80\x00\x1f\xfc"])
def test_bytes_that_are_no_adts_stream_are_not_audio(junk: bytes) -> None:
    with pytest.raises(NotAudio):
        AacIngest(24_000).feed(junk + bytes(16))


def test_the_recording_is_ogg_opus_of_what_was_sent() -> None:
    recorder = Recorder(max_ms=60_000)
    assert recorder.finish() is None
    for packet in PcmIngest(16000, 24_000).feed(_tone(1.0)):
        recorder.add(packet)
    recording = recorder.finish()
    assert recording is not None
    assert recording.data.startswith(b"OggS")
    assert 950 <= recording.duration_ms <= 1000
    with av.open(io.BytesIO(recording.data), "r") as container:
        decoded = sum(int(f.samples) for f in container.decode(audio=0))
    assert decoded >= 48000 * 0.9


def test_the_recording_is_bounded_by_the_longest_talk() -> None:
    recorder = Recorder(max_ms=100)  # five 20 ms packets
    packets = PcmIngest(16000, 24_000).feed(_tone(0.4))
    for packet in packets:
        recorder.add(packet)
    assert recorder.truncated
    recording = recorder.finish()
    assert recording is not None
    assert recording.duration_ms <= 100
    # Large packets hit the byte budget first: a passed-through client cannot fill memory.
    big = Recorder(max_ms=1000)
    for _ in range(50):
        big.add(b"\xfc" + bytes(3000))
    assert big.truncated
    assert big.size <= big.max_bytes <= 50 * 400


def test_opus_of_a_needlessly_high_bitrate_is_encoded_again_not_passed_on() -> None:
    noise = np.random.default_rng(7).standard_normal(48000).clip(-4, 4) * 8000
    loud = _Encoder(48000, 256_000).feed(noise.astype("<i2"))
    assert max(len(p) for p in loud) > MAX_PASSTHROUGH_BYTES
    ingest = OpusIngest(24_000)
    out = [packet for p in loud for packet in ingest.feed(p)]
    assert out
    assert all(opus_duration_tenths(p) == 200 for p in out)
    assert max(len(p) for p in out) <= MAX_PASSTHROUGH_BYTES
