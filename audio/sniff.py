"""Recognising an upload from its first bytes, before FFmpeg sees it: the container allow-list.

FFmpeg's own probing would happily open an HLS playlist or an ffconcat list and follow the
files and URLs inside it. So the format is decided here, from magic numbers we check
ourselves, and FFmpeg is then told which single demuxer to use. Anything that is not one of
the allowed containers is refused, with a clearer word for text and playlists.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO, Final

from audio.errors import CorruptAudio, EmptyAudio, UnsupportedAudio

HEAD_BYTES: Final = 4096
# An ID3v2 tag (cover art included) may precede MP3, ADTS AAC or FLAC data; look past it,
# but only so far.
_MAX_ID3_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say: our name for the container and the FFmpeg demuxer to force."""

    container: str
    demuxer: str


# Names of the demuxers we may hand a file to; none of them opens other files or URLs
# (the MOV demuxer could, through data references, which stay off: see decode.py).
ALLOWED_DEMUXERS: Final = frozenset({"wav", "flac", "ogg", "matroska", "mov", "mp3", "aac", "amr"})

_MP4_BOXES: Final = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
_3GP_BRANDS: Final = (b"3gp", b"3g2")
_URL: Final = re.compile(rb"^\s*[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://")
_CONCAT_LINE: Final = re.compile(rb"^\s*file\s+['\"]?\S", re.MULTILINE)


def sniff(handle: BinaryIO, size: int) -> Sniffed:
    """Name the container of an opened file of `size` bytes, or raise why it is refused."""
    if size == 0:
        raise EmptyAudio("파일이 0바이트입니다. / The file has zero bytes.")
    handle.seek(0)
    head = handle.read(HEAD_BYTES)
    if head.startswith(b"ID3") and len(head) >= 10:
        after = _id3_end(head)
        if after < min(size, _MAX_ID3_BYTES):
            handle.seek(after)
            inner = handle.read(HEAD_BYTES)
            found = _by_magic(inner)
            if found is not None and found.container in ("mp3", "aac", "flac"):
                return found
            if _mpeg_audio(inner) or _sync_mpeg_audio_within(inner):
                return Sniffed("mp3", "mp3")
        raise UnsupportedAudio(
            "ID3 태그 뒤에 알 수 있는 오디오가 없습니다. / "
            "No recognisable audio follows the ID3 tag."
        )
    found = _by_magic(head)
    if found is not None:
        return found
    _refuse_text(head)
    raise UnsupportedAudio(
        "알 수 없는 파일 형식입니다. m4a, 3gp, webm, ogg, mp3, flac, wav 파일을 보내 주세요. / "
        "Unknown file format; send m4a, 3gp, webm, ogg, mp3, flac or wav."
    )


def _by_magic(head: bytes) -> Sniffed | None:
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return Sniffed("wav", "wav")
    if head.startswith(b"fLaC"):
        return Sniffed("flac", "flac")
    if head.startswith(b"OggS"):
        return Sniffed("ogg", "ogg")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("webm" if b"webm" in head[:64] else "matroska", "matroska")
    if len(head) >= 12 and head[4:8] in _MP4_BOXES:
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        if brand.startswith(_3GP_BRANDS):
            return Sniffed("3gp", "mov")
        if brand == b"M4A ":
            return Sniffed("m4a", "mov")
        if brand == b"qt  ":
            return Sniffed("mov", "mov")
        return Sniffed("mp4", "mov")
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return Sniffed("amr", "amr")
    if _adts(head):
        return Sniffed("aac", "aac")
    if _mpeg_audio(head):
        return Sniffed("mp3", "mp3")
    return None


def _id3_end(head: bytes) -> int:
    b = head[6:10]
    size = (b[0] & 0x7F) << 21 | (b[1] & 0x7F) << 14 | (b[2] & 0x7F) << 7 | (b[3] & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


# MPEG audio frame header tables (Layer III only; Layer I/II are not voice recordings).
_MPEG1_L3_KBPS: Final = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS: Final = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_length(head: bytes, at: int) -> int | None:
    if at + 4 > len(head):
        return None
    b1, b2 = head[at + 1], head[at + 2]
    if head[at] != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version = (b1 >> 3) & 0x03
    layer = (b1 >> 1) & 0x03
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 0x03
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _MPEG_RATES[version][rate_index]
    padding = (b2 >> 1) & 0x01
    if version == 3:
        return 144 * _MPEG1_L3_KBPS[bitrate_index] * 1000 // rate + padding
    return 72 * _MPEG2_L3_KBPS[bitrate_index] * 1000 // rate + padding


def _mpeg_audio(head: bytes, at: int = 0) -> bool:
    """Two consecutive valid Layer III frame headers (one when the data ends after the first)."""
    length = _mpeg_frame_length(head, at)
    if length is None:
        return False
    if at + length + 4 > len(head):
        return len(head) < HEAD_BYTES
    return _mpeg_frame_length(head, at + length) is not None


def _sync_mpeg_audio_within(head: bytes) -> bool:
    # Some taggers leave padding between the ID3 tag and the first frame.
    at = head.find(b"\xff")
    while 0 <= at < 1024:
        if _mpeg_audio(head, at):
            return True
        at = head.find(b"\xff", at + 1)
    return False


def _adts(head: bytes) -> bool:
    if len(head) < 7 or head[0] != 0xFF or (head[1] & 0xF6) != 0xF0:
        return False
    length = ((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5)
    if length < 7:
        return False
    if length + 2 > len(head):
        return len(head) < HEAD_BYTES
    return head[length] == 0xFF and (head[length + 1] & 0xF6) == 0xF0


def _refuse_text(head: bytes) -> None:
    """Raise a specific refusal for playlists, lists of files, URLs, markup and plain text."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    lowered = text[:64].lower()
    if lowered.startswith(b"#ext"):
        kind = "재생 목록(HLS/M3U) / a playlist (HLS/M3U)"
    elif lowered.startswith(b"ffconcat") or _CONCAT_LINE.search(text[:1024]):
        kind = "파일 목록(ffconcat) / a list of files (ffconcat)"
    elif _URL.match(text):
        kind = "주소(URL) / a URL"
    elif lowered.startswith((b"<?xml", b"<mpd", b"<smil", b"<!doctype", b"<html", b"[playlist]")):
        kind = "문서 또는 재생 목록 / a document or playlist"
    elif _looks_like_text(head):
        kind = "텍스트 / text"
    else:
        return
    raise UnsupportedAudio(
        f"오디오가 아니라 {kind.split(' / ')[0]} 파일입니다. / "
        f"The file is {kind.split(' / ')[1]}, not audio."
    )


def _looks_like_text(head: bytes) -> bool:
    sample = head[:1024]
    try:
        decoded = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        if exc.start < len(sample) - 4:
            return False
        decoded = sample[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return len(decoded) > 0 and printable / len(decoded) > 0.95


def check_wav_header(handle: BinaryIO, size: int) -> None:
    """Refuse a WAV whose data chunk claims more bytes than the file holds (cut or lying)."""
    handle.seek(0)
    riff = handle.read(12)
    if riff[:4] != b"RIFF":
        return  # RF64 keeps its sizes in a ds64 chunk; FFmpeg checks those itself.
    offset = 12
    while offset + 8 <= size:
        handle.seek(offset)
        chunk = handle.read(8)
        if len(chunk) < 8:
            break
        chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF are what streaming recorders write when the length is unknown.
            if chunk_size in (0, 0xFFFF_FFFF):
                return
            available = size - offset - 8
            if chunk_size > available + 1:
                raise CorruptAudio(
                    f"WAV 헤더는 {chunk_size}바이트라고 하지만 파일에는 {available}바이트뿐입니다"
                    " (잘렸거나 손상됨). / "
                    f"The WAV header claims {chunk_size} bytes of audio but the file holds "
                    f"{available} (truncated or damaged)."
                )
            return
        offset += 8 + chunk_size + (chunk_size & 1)
    raise CorruptAudio("WAV 파일에 데이터 청크가 없습니다. / The WAV file has no data chunk.")
