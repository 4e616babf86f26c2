"""Opening untrusted files: FFmpeg never follows a reference, and damage is named as such."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from audio.decode import Limits, _open_container, decode_file
from audio.errors import CorruptAudio
from audio.sniff import Sniffed
from tests import media

LIMITS = Limits(max_bytes=20 * 1024 * 1024, max_duration_s=600.0)


def test_nested_files_are_never_opened_even_by_a_list_demuxer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: the sniffer never picks the concat demuxer, but if a demuxer ever
    # tried to open another file, the refusal in decode.py stops it.
    media.make_recording(tmp_path / "segment.wav", "wav-s16", 1.0)
    listing = b"ffconcat version 1.0\nfile 'segment.wav'\n"
    (tmp_path / "list.ffconcat").write_bytes(listing)
    monkeypatch.chdir(tmp_path)
    with av.open(str(tmp_path / "list.ffconcat"), format="concat") as unguarded:
        assert unguarded.streams.audio  # the premise: FFmpeg alone would follow the list

    with pytest.raises(CorruptAudio):
        _open_container(io.BytesIO(listing), Sniffed("ffconcat", "concat"))


def test_mp4_data_references_stay_off() -> None:
    from audio.decode import _DEMUXER_OPTIONS

    assert _DEMUXER_OPTIONS["mov"]["enable_drefs"] == "0"


def _garble(data: bytes, start: int, size: int, seed: int = 3) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + size :]


def test_heavily_garbled_aac_is_corrupt(recordings: dict[str, Path]) -> None:
    data = recordings["m4a"].read_bytes()
    start = data.find(b"mdat") + 8
    damaged = _garble(data, start, data.find(b"moov") - 4 - start)

    with pytest.raises(CorruptAudio):
        decode_file(damaged, LIMITS, 16000)


def test_a_short_glitch_in_an_mp3_is_survived(recordings: dict[str, Path]) -> None:
    data = recordings["mp3"].read_bytes()

    info, pcm = decode_file(_garble(data, len(data) // 3, 600), LIMITS, 16000)

    assert info.codec == "mp3"
    assert pcm.size > 2.0 * 16000


def test_bytes_and_paths_decode_alike(recordings: dict[str, Path]) -> None:
    path = recordings["ogg-opus"]

    _, from_path = decode_file(path, LIMITS, 16000)
    _, from_bytes = decode_file(path.read_bytes(), LIMITS, 16000)

    assert np.array_equal(from_path, from_bytes)
    assert from_path.dtype == np.float32
