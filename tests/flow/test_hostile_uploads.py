"""Every hostile upload gets its status and code through the HTTP API; the next one still works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import media
from tests.flow.conftest import Stack

CASES: list[tuple[str, str, Callable[[Path], Path], int, str]] = [
    ("empty", "notice.m4a", media.make_empty, 422, "empty_audio"),
    ("truncated", "notice.m4a", media.make_truncated, 422, "corrupt_audio"),
    ("random-bytes", "notice.mp3", media.make_random, 422, "unsupported_audio"),
    ("text-named-mp3", "notice.mp3", media.make_text, 422, "unsupported_audio"),
    ("hls", "notice.m3u8", media.make_hls_playlist, 422, "unsupported_audio"),
    ("hls-as-mp3", "notice.mp3", media.make_hls_playlist, 422, "unsupported_audio"),
    ("ffconcat-as-wav", "notice.wav", media.make_ffconcat, 422, "unsupported_audio"),
    ("lying-wav", "notice.wav", media.make_lying_wav, 422, "corrupt_audio"),
    ("video-only", "notice.mp4", media.make_video_only, 422, "unsupported_audio"),
    ("unsupported-codec", "notice.wav", media.make_unsupported_codec, 422, "unsupported_audio"),
    ("silence", "notice.wav", media.make_silence, 422, "silent_audio"),
    ("hours-long", "notice.flac", lambda p: media.make_long(p, 660.0), 422, "audio_too_long"),
]


@pytest.mark.parametrize(
    ("name", "filename", "make", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
async def test_hostile_upload_is_refused_and_the_gateway_keeps_serving(
    stack: Stack,
    tmp_path: Path,
    name: str,
    filename: str,
    make: Callable[[Path], Path],
    status: int,
    code: str,
) -> None:
    path = make(tmp_path / filename)
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": (filename, path.read_bytes(), "application/octet-stream")},
    )
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert " / " in response.json()["detail"]
    good = media.make_recording(tmp_path / "good.m4a", "m4a", seconds=1.0)
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("good.m4a", good.read_bytes(), "audio/mp4")},
    )
    assert response.status_code == 201, response.text
    assert not stack.bus.published, "nothing is published inside a request"


async def test_an_upload_over_the_size_limit_is_413(stack: Stack, tmp_path: Path) -> None:
    limit = stack.settings.max_upload_bytes
    path = media.make_oversized(tmp_path / "big.wav", limit + 200 * 1024)
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("big.wav", path.read_bytes(), "audio/wav")},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "audio_too_large"
    listing = (await stack.client.get("/api/v1/broadcasts")).json()
    assert listing["total"] == 0
