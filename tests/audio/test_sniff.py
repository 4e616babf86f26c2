"""Deciding the container from the first bytes, before FFmpeg is involved."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from audio.errors import CorruptAudio, EmptyAudio, UnsupportedAudio
from audio.sniff import Sniffed, check_wav_header, sniff
from tests import media


def _sniff(data: bytes) -> Sniffed:
    return sniff(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    ("kind", "container", "demuxer"),
    [
        ("m4a", "m4a", "mov"),
        ("mp4", "mp4", "mov"),
        ("3gp-amrnb", "3gp", "mov"),
        ("3gp-amrwb", "3gp", "mov"),
        ("webm-opus", "webm", "matroska"),
        ("ogg-opus", "ogg", "ogg"),
        ("mp3", "mp3", "mp3"),
        ("flac", "flac", "flac"),
        ("wav-s16", "wav", "wav"),
        ("wav-alaw", "wav", "wav"),
        ("aac-adts", "aac", "aac"),
        ("amr-nb", "amr", "amr"),
    ],
)
def test_recordings_are_recognised(
    recordings: dict[str, Path], kind: str, container: str, demuxer: str
) -> None:
    assert _sniff(recordings[kind].read_bytes()) == Sniffed(container, demuxer)


def test_mp3_behind_an_id3_tag_is_recognised(recordings: dict[str, Path]) -> None:
    frames = recordings["mp3"].read_bytes()
    body = frames[frames.find(b"\xff\xfb") :] if frames.startswith(b"ID3") else frames
    tag_size = 3000
    size = bytes(
        [(tag_size >> 21) & 0x7F, (tag_size >> 14) & 0x7F, (tag_size >> 7) & 0x7F, tag_size & 0x7F]
    )
    tagged = b"ID3\x04\x00\x00" + size + bytes(tag_size) + body

    assert _sniff(tagged) == Sniffed("mp3", "mp3")


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"#EXTM3U\n#EXTINF:10,\nhttp://example.invalid/a.ts\n", "playlist"),
        (b"\xef\xbb\xbf#EXTM3U\nsegment.ts\n", "playlist"),
        (b"ffconcat version 1.0\nfile 'a.wav'\n", "list of files"),
        (b"file '/etc/passwd'\n", "list of files"),
        (b"https://example.invalid/recording.m4a", "URL"),
        (b"<?xml version='1.0'?><MPD></MPD>", "document"),
        ("마을 방송 원고입니다.\n".encode() * 30, "text"),
    ],
)
def test_text_and_playlists_are_refused_by_name(data: bytes, word: str) -> None:
    with pytest.raises(UnsupportedAudio, match=word):
        _sniff(data)


def test_unknown_binary_is_refused() -> None:
    with pytest.raises(UnsupportedAudio, match="Unknown file format"):
        _sniff(bytes(range(256)) * 8)


def test_a_single_mpeg_sync_word_is_not_enough() -> None:
    # 0xFFFB looks like an MPEG-1 Layer III header, but no second frame follows.
    with pytest.raises(UnsupportedAudio):
        _sniff(b"\xff\xfb\x90\x00" + bytes(range(256)) * 16)


def test_empty_is_empty() -> None:
    with pytest.raises(EmptyAudio):
        _sniff(b"")


def test_wav_header_check_accepts_honest_and_streaming_sizes(tmp_path: Path) -> None:
    honest = media.make_recording(tmp_path / "a.wav", "wav-s16", 1.0).read_bytes()
    streaming = bytearray(honest)
    offset = streaming.find(b"data")
    streaming[offset + 4 : offset + 8] = b"\xff\xff\xff\xff"

    for data in (honest, bytes(streaming)):
        check_wav_header(io.BytesIO(data), len(data))


def test_wav_header_check_refuses_a_cut_file(tmp_path: Path) -> None:
    data = media.make_recording(tmp_path / "a.wav", "wav-s16", 1.0).read_bytes()[:20_000]

    with pytest.raises(CorruptAudio, match="truncated"):
        check_wav_header(io.BytesIO(data), len(data))
