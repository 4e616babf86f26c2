"""Speaker-side audio: level measurement, decoding, and fetching by URL (bounded, hash-checked)."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np
import pytest

from devices.sound import (
    Fetcher,
    FetchFailed,
    IntegrityFailed,
    Undecodable,
    decode_sound,
    measure_level_dbfs,
)
from tests.devices.commands import opus_clip
from wire import contract
from wire.contract import Codec


def test_levels_of_known_signals() -> None:
    square = np.where(np.arange(1600) % 2, 32767, -32767).astype("<i2").tobytes()
    assert measure_level_dbfs(square) == pytest.approx(0.0, abs=0.01)
    t = np.arange(16000) / 16000
    sine = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    assert measure_level_dbfs(sine) == pytest.approx(-9.03, abs=0.05)  # -6 dB and -3 dB of RMS
    assert measure_level_dbfs(bytes(3200)) == -200.0
    assert measure_level_dbfs(b"") == -200.0


def test_an_opus_clip_decodes_to_16k_pcm_with_its_level() -> None:
    sound = decode_sound(opus_clip(0.5))
    assert sound.pcm.sample_rate == 16000
    assert sound.duration_ms == pytest.approx(500, abs=30)
    assert sound.level_dbfs == pytest.approx(-13.5, abs=1.5)  # a 0.3 amplitude sine


def test_garbage_is_undecodable() -> None:
    with pytest.raises(Undecodable):
        decode_sound(b"OggS" + bytes(500))


GATEWAY = "https://gw.example"
BODY = b"OggS-audio-bytes" * 100


def ref(url: str, data: bytes = BODY) -> contract.AudioRef:
    return contract.AudioRef(
        codec=Codec.OPUS,
        mime_type="audio/ogg",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        duration_ms=500,
        url=url,
    )


def serving(body: bytes, seen: list[httpx.Request], status: int = 200) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_the_token_goes_only_to_the_gateway_origin() -> None:
    seen: list[httpx.Request] = []
    async with serving(BODY, seen) as client:
        fetcher = Fetcher(client=client, token="secret", gateway_url=GATEWAY)
        assert await fetcher.fetch(ref(f"{GATEWAY}/api/v1/audio/x")) == BODY
        assert seen[-1].headers["authorization"] == "Bearer secret"
        with pytest.raises(FetchFailed):
            await fetcher.fetch(ref("https://elsewhere.example/a.ogg"))
        with pytest.raises(FetchFailed):
            await fetcher.fetch(ref("http://gw.example/a.ogg"))  # another scheme, another origin
        assert len(seen) == 1
        open_fetcher = Fetcher(client=client, token="secret")
        assert await open_fetcher.fetch(ref("https://cdn.example/a.ogg")) == BODY
        assert "authorization" not in seen[-1].headers


async def test_bytes_that_do_not_match_are_refused() -> None:
    seen: list[httpx.Request] = []
    async with serving(BODY, seen) as client:
        fetcher = Fetcher(client=client, gateway_url=GATEWAY, retry_delay_s=0)
        tampered = ref(f"{GATEWAY}/a", data=b"x" * len(BODY))
        with pytest.raises(IntegrityFailed):
            await fetcher.fetch(tampered)
        smaller = ref(f"{GATEWAY}/a", data=BODY[:-10])
        with pytest.raises(FetchFailed):  # the server sent more than announced
            await fetcher.fetch(smaller)


async def test_http_errors_are_retried_then_reported() -> None:
    seen: list[httpx.Request] = []
    async with serving(b"nope", seen, status=503) as client:
        fetcher = Fetcher(client=client, gateway_url=GATEWAY, attempts=3, retry_delay_s=0)
        with pytest.raises(FetchFailed):
            await fetcher.fetch(ref(f"{GATEWAY}/a"))
    assert len(seen) == 3


async def test_oversized_audio_is_refused_before_fetching() -> None:
    seen: list[httpx.Request] = []
    async with serving(BODY, seen) as client:
        fetcher = Fetcher(client=client, max_bytes=100)
        with pytest.raises(FetchFailed):
            await fetcher.fetch(ref("https://cdn.example/a.ogg"))
    assert seen == []
