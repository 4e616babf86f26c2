"""What a speaker does with received audio: verify, measure and decode it, safely."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from audio.decode import Limits
from audio.errors import AudioTooLarge, AudioTooLong, UnsupportedAudio
from audio.pipeline import AudioOptions, Transcoded, transcode_file
from audio.playback import decode_pcm, duration_ms, verify_sha256
from tests import media


@pytest.fixture(scope="module")
def broadcast(recordings: dict[str, Path]) -> Transcoded:
    return transcode_file(recordings["m4a"], category="village_notice", options=AudioOptions())


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_broadcast_audio_decodes_to_16k_mono_pcm(broadcast: Transcoded, codec: str) -> None:
    encoded = broadcast.variants[codec]

    pcm = decode_pcm(encoded.data)

    assert pcm.sample_rate == 16000
    assert pcm.frames == len(pcm.samples) // 2
    assert abs(pcm.duration_ms - encoded.duration_ms) <= 2
    samples = np.frombuffer(pcm.samples, "<i2")
    assert 1000 < np.abs(samples).max() < 32767


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_duration_is_read_cheaply_and_matches(broadcast: Transcoded, codec: str) -> None:
    encoded = broadcast.variants[codec]

    assert abs(duration_ms(encoded.data) - encoded.duration_ms) <= 2


def test_decode_at_another_rate(broadcast: Transcoded) -> None:
    pcm = decode_pcm(broadcast.variants["opus"].data, sample_rate=48000)

    assert pcm.sample_rate == 48000
    assert abs(pcm.frames - broadcast.duration_ms * 48) <= 96


def test_sha256_verification(broadcast: Transcoded) -> None:
    data = broadcast.variants["opus"].data
    digest = hashlib.sha256(data).hexdigest()

    assert verify_sha256(data, digest)
    assert verify_sha256(data, digest.upper())
    assert not verify_sha256(data + b"\x00", digest)
    assert not verify_sha256(data, "not a digest")


def test_received_playlists_and_garbage_are_refused(tmp_path: Path) -> None:
    for make in (media.make_hls_playlist, media.make_ffconcat, media.make_random):
        data = make(tmp_path / "x").read_bytes()
        with pytest.raises(UnsupportedAudio):
            decode_pcm(data)
        with pytest.raises(UnsupportedAudio):
            duration_ms(data)


def test_playback_is_bounded(broadcast: Transcoded, tmp_path: Path) -> None:
    data = broadcast.variants["mp3"].data
    long_data = media.make_long(tmp_path / "long.flac", 1200.0).read_bytes()

    with pytest.raises(AudioTooLarge):
        decode_pcm(data, limits=Limits(max_bytes=1024, max_duration_s=900))
    with pytest.raises(AudioTooLong):
        decode_pcm(long_data)
