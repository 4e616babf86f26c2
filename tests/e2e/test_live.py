"""End to end: live broadcasts from a talking client through the gateway process, a real
Mosquitto and simulated speakers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import statistics
import sys
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import websockets

from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker, receipt_public_keys, with_receipt_keys
from maeul.live import CATCH_UP_S, LiveClient, LiveError, opus_packets
from tests.devices.observer import Observer
from tests.e2e.harness import TOKEN, GatewayProcess, wait_until_final
from tests.media import make_recording
from tests.support.databases import seed_database
from wire.contract import AckStatus, SpeakerIdentity

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CITY = "jinju"
# Chimes and recorded messages play four times faster; live audio is always real time.
SPEED = 4.0


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code=CITY
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        city_code=CITY,
        extra_env={
            "GATEWAY_LIVE_GRACE_S": "1",
            # A roomy jitter buffer: "no frame lost" must hold on a busy test machine too.
            "GATEWAY_LIVE_JITTER_MS": "250",
            "GATEWAY_LIVE_INVALID_LIMIT": "10",
            "GATEWAY_LIVE_FLOOD_LIMIT": "20",
            "GATEWAY_POLL_INTERVAL_S": "0.2",
        },
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def observer(mqtt_url: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, CITY) as watching:
        yield watching


@pytest.fixture
async def fleet(gateway: GatewayProcess, mqtt_url: str) -> AsyncIterator[Fleet]:
    async with gateway.client() as client:
        listed = (await client.get("/api/v1/speakers/fleet")).json()
        keys = {
            k["key_id"]: base64.b64decode(k["public_key"])
            for k in (await client.get("/api/v1/keys")).json()
        }
    speakers = [
        SimSpeaker(
            identity=SpeakerIdentity(
                city=listed["city_code"],
                district=s["district_code"],
                village=s["village_code"],
                speaker=s["code"],
            ),
            codecs=tuple(s["codecs"]),
        )
        for s in listed["items"]
    ]
    # Each speaker signs its receipts with a key of its own, enrolled before it plays anything.
    speakers = with_receipt_keys(speakers)
    async with gateway.client() as client:
        enrolled = await client.put(
            "/api/v1/speakers/receipt-keys", json={"keys": receipt_public_keys(speakers)}
        )
        assert enrolled.status_code == 200, enrolled.text
    simulated = Fleet(
        FleetConfig(
            mqtt_url=mqtt_url, gateway_url=gateway.url, seed=3, public_keys=keys, speed=SPEED
        )
    )
    await simulated.start(speakers)
    try:
        async with gateway.client() as client, asyncio.timeout(30):
            while (  # noqa: ASYNC110 - polling what the gateway recorded
                await client.get("/api/v1/speakers", params={"online": "true", "limit": 1})
            ).json()["total"] < len(speakers):
                await asyncio.sleep(0.2)
        yield simulated
    finally:
        await simulated.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Two seconds of speech-like sound as 20 ms Opus packets."""
    path = make_recording(tmp_path_factory.mktemp("live") / "speech.m4a", "m4a", seconds=2.0)
    return opus_packets(path)


def _webm(seconds: float) -> bytes:
    """A tone as a browser's MediaRecorder writes it: WebM with 60 ms Opus packets."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream: Any = out.add_stream(
            "libopus", rate=48000, layout="mono", options={"frame_duration": "60"}
        )
        t = np.arange(int(48000 * seconds)) / 48000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


async def _district(client: httpx.AsyncClient, code: str) -> tuple[int, list[str], list[str]]:
    """(district id, its Opus speakers, its MP3-only speakers)."""
    districts = (await client.get("/api/v1/districts")).json()["items"]
    district = next(d for d in districts if d["code"] == code)
    listed = (await client.get("/api/v1/speakers/fleet")).json()["items"]
    mine = [s for s in listed if s["district_code"] == code]
    opus = sorted(s["code"] for s in mine if "opus" in s["codecs"])
    mp3_only = sorted(s["code"] for s in mine if "opus" not in s["codecs"])
    return district["id"], opus, mp3_only


def _final(observer: Observer, broadcast_id: str, speaker: str) -> Any:
    acks = [a for a in observer.acks if a.broadcast_id == broadcast_id and a.speaker == speaker]
    finals = [a for a in acks if a.status in (AckStatus.PLAYED, AckStatus.FAILED)]
    return finals[-1] if finals else None


async def test_a_live_talk_plays_on_every_speaker_of_a_district_without_loss(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer, speech: list[bytes]
) -> None:
    async with gateway.client() as client:
        district_id, speakers, _ = await _district(client, "d01")
    # Stamped as the talk page and `maeul live` stamp: speakers report mouth to horn.
    talk = LiveClient(gateway.url, TOKEN, stamped=True)
    try:
        started = await talk.open(
            {"category": "village_notice", "district_ids": [district_id], "format": "opus"}
        )
        assert started["speakers"] == len(speakers)
        await talk.wait_for("ready", 30)
        await talk.send_paced(speech)
        ended = await talk.stop()
    finally:
        await talk.close()
    broadcast_id = ended["broadcast_id"]
    assert ended["reason"] == "stopped"
    assert ended["frames"] == len(speech)

    await observer.until(
        lambda: all(_final(observer, broadcast_id, s) is not None for s in speakers), 30
    )
    for speaker in speakers:
        final = _final(observer, broadcast_id, speaker)
        assert final.status is AckStatus.PLAYED, (speaker, final)
        assert final.frames_lost == 0, (speaker, final)
        assert final.frames_received == len(speech)
        assert final.latency_ms is not None
        assert final.mouth_p50_ms is not None, (speaker, final)
        assert final.mouth_p95_ms is not None
        assert final.mouth_p95_ms >= final.mouth_p50_ms

    async with gateway.client() as client:
        summary = await wait_until_final(client, broadcast_id, limit_s=60)
        assert summary["speakers"]["played"] == len(speakers)
        # Each speaker's reception is kept with its delivery, and summed up per village.
        detail = (await client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
        for village in detail["village_deliveries"]:
            heard = [s for s in village["speakers"] if s["code"] in speakers]
            for spoken in heard:
                final = _final(observer, broadcast_id, spoken["code"])
                assert spoken["live_latency_ms"] == final.latency_ms, spoken
                assert spoken["live_frames_lost"] == final.frames_lost == 0
                assert spoken["live_mouth_p50_ms"] == final.mouth_p50_ms
                assert spoken["live_mouth_p95_ms"] == final.mouth_p95_ms
                # The stream's proof names the chime and the talk's length, signed.
                assert spoken["proof"]["verified"] is True, spoken
                assert spoken["proof"]["played_ms"] == len(speech) * 20
            latencies = sorted(s["live_latency_ms"] for s in heard)
            if heard:
                assert village["live_latency_ms"] == round(statistics.median(latencies))
                assert village["live_frames_lost"] == 0
                # The board and the report show the village's slowest speaker's p95.
                assert village["live_mouth_p95_ms"] == max(s["live_mouth_p95_ms"] for s in heard)
        # The recording is kept like an uploaded one: the archive serves it.
        recording = await client.get(f"/api/v1/audio/{ended['recording_sha256']}")
        assert recording.status_code == 200
        assert recording.content.startswith(b"OggS")
        assert abs(ended["duration_ms"] - len(speech) * 20) <= 20
        # ... and residents can replay it on their village's page.
        village = await client.get("/api/v1/villages", params={"district_id": district_id})
        notices = await client.get(f"/api/v1/notices/villages/{village.json()['items'][0]['id']}")
        notice = next(n for n in notices.json()["items"] if n["id"] == broadcast_id)
        assert notice["audio_url"]
        assert (await client.get(notice["audio_url"])).content == recording.content


async def test_a_vanished_client_ends_the_session_on_every_speaker(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer
) -> None:
    async with gateway.client() as client:
        district_id, speakers, mp3_only = await _district(client, "d02")
    talk = LiveClient(gateway.url, TOKEN)
    started = await talk.open(
        {"category": "administrative", "district_ids": [district_id], "format": "pcm"}
    )
    broadcast_id = started["broadcast_id"]
    await talk.wait_for("ready", 30)
    tone = (8000 * np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000)).astype("<i2").tobytes()
    for offset in range(0, len(tone), 640):  # 20 ms of 16 kHz PCM per message
        await talk.send(tone[offset : offset + 640])
        await asyncio.sleep(0.02)
    await talk.vanish()

    await observer.until(
        lambda: all(_final(observer, broadcast_id, s) is not None for s in speakers), 30
    )
    for speaker in speakers:
        final = _final(observer, broadcast_id, speaker)
        assert final.status is AckStatus.FAILED, (speaker, final)
        assert final.reason == "interrupted"
        assert fleet.speaker(speaker).live.playing is None
    # A speaker that cannot play Opus refuses a live broadcast outright.
    for speaker in mp3_only:
        refused = [
            a for a in observer.acks if a.broadcast_id == broadcast_id and a.speaker == speaker
        ]
        assert refused
        assert refused[-1].status is AckStatus.REJECTED
        assert refused[-1].reason == "unsupported_codec"
    async with gateway.client() as client:
        summary = await wait_until_final(client, broadcast_id, limit_s=60)
        assert summary["speakers"]["played"] == 0


async def test_a_disaster_live_session_preempts_a_village_heads_talk(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer
) -> None:
    async with gateway.client() as client:
        district_id, speakers, _ = await _district(client, "d01")
    head = LiveClient(gateway.url, TOKEN)
    alert = LiveClient(gateway.url, TOKEN)
    webm = _webm(40.0)
    alert_done = asyncio.Event()

    def heard_again() -> bool:
        """Every speaker plays the head's talk again after the alert pre-empted it."""
        for s in speakers:
            statuses = [
                a.status
                for a in observer.acks
                if a.broadcast_id == talk["broadcast_id"] and a.speaker == s
            ]
            if AckStatus.PREEMPTED not in statuses:
                return False
            if AckStatus.PLAYING not in statuses[statuses.index(AckStatus.PREEMPTED) :]:
                return False
        return True

    try:
        talk = await head.open(
            {"category": "village_notice", "district_ids": [district_id], "format": "webm"}
        )
        await head.wait_for("ready", 30)

        async def keep_talking() -> None:
            # MediaRecorder-sized chunks at the pace of the audio they hold, until the talk is
            # heard again after the alert, and a second more.
            chunk = 600
            pace = 40.0 * chunk / len(webm)
            start = asyncio.get_running_loop().time()
            tail: float | None = None
            for index, offset in enumerate(range(0, len(webm), chunk)):
                await head.send(webm[offset : offset + chunk])
                now = asyncio.get_running_loop().time()
                if tail is None and alert_done.is_set() and heard_again():
                    tail = now + 1.0
                if tail is not None and now >= tail:
                    return
                behind = now - (start + (index + 1) * pace)
                if behind > CATCH_UP_S:  # a stalled test process resumes the pace, no burst
                    start += behind - CATCH_UP_S
                await asyncio.sleep(max(0.0, start + (index + 1) * pace - now))

        talking = asyncio.create_task(keep_talking())
        # The same villages at the same priority: refused while the head is on air.
        with pytest.raises(LiveError) as refused:
            await LiveClient(gateway.url, TOKEN).ticket(
                {"category": "village_notice", "district_ids": [district_id]}
            )
        assert refused.value.code == "live_busy"

        await observer.until(
            lambda: all(
                any(
                    a.broadcast_id == talk["broadcast_id"]
                    and a.speaker == s
                    and a.status is AckStatus.PLAYING
                    for a in observer.acks
                )
                for s in speakers
            ),
            30,
        )
        started = await alert.open(
            {"category": "disaster", "district_ids": [district_id], "format": "pcm"}
        )
        await alert.wait_for("ready", 30)
        silence_ish = (2000 * np.sin(np.arange(16000) * 0.2)).astype("<i2").tobytes()
        for offset in range(0, len(silence_ish), 640):
            await alert.send(silence_ish[offset : offset + 640])
            await asyncio.sleep(0.02)
        alert_end = await alert.stop()
        alert_done.set()
        await talking
        head_end = await head.stop()
    finally:
        await head.close()
        await alert.close()

    assert alert_end["broadcast_id"] == started["broadcast_id"]
    await observer.until(
        lambda: all(
            _final(observer, b, s) is not None
            for s in speakers
            for b in (talk["broadcast_id"], started["broadcast_id"])
        ),
        30,
    )
    for speaker in speakers:
        statuses = [
            a.status
            for a in observer.acks
            if a.broadcast_id == talk["broadcast_id"] and a.speaker == speaker
        ]
        assert AckStatus.PREEMPTED in statuses, (speaker, statuses)
        assert _final(observer, started["broadcast_id"], speaker).status is AckStatus.PLAYED
        # After the alert the head's talk is heard again, to its end.
        assert statuses[-1] is AckStatus.PLAYED, (speaker, statuses)
    assert head_end["reason"] == "stopped"


async def _send_all(client: LiveClient, messages: list[bytes]) -> None:
    """Send until the gateway has had enough and closed the connection."""
    for message in messages:
        try:
            await client.send(message)
        except websockets.ConnectionClosed:
            return


async def test_bad_input_is_refused_and_other_sessions_go_on(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer, speech: list[bytes]
) -> None:
    async with gateway.client() as client:
        district_id, speakers, _ = await _district(client, "d01")
        other_id, others, _ = await _district(client, "d02")
        unknown = await client.post(
            "/api/v1/live/tickets",
            json={"category": "village_notice", "district_ids": [other_id], "format": "mp3"},
        )
        assert unknown.status_code == 422
        assert unknown.json()["error"] == "invalid_request"
    good = LiveClient(gateway.url, TOKEN)
    rogues: list[str] = []
    try:
        started = await good.open(
            {"category": "village_notice", "district_ids": [district_id], "format": "opus"}
        )
        await good.wait_for("ready", 30)
        speaking = asyncio.create_task(good.send_paced(speech * 3))

        # An oversized message and messages that are not audio: each dropped and reported,
        # then the session is ended.
        junk = LiveClient(gateway.url, TOKEN)
        rogues.append(
            (
                await junk.open(
                    {"category": "administrative", "district_ids": [other_id], "format": "opus"}
                )
            )["broadcast_id"]
        )
        await junk.send(b"\xfc" * 5000)
        assert (await junk.wait_for("warning", 10))["error"] == "frame_too_large"
        await _send_all(junk, [b"\xff" * 40] * 20)
        with pytest.raises(LiveError) as not_audio:
            await junk.wait_for("ended", 10)
        assert not_audio.value.code == "not_audio"
        await junk.close()

        # Audio much faster than real time: the excess is dropped, then the session is ended.
        flood = LiveClient(gateway.url, TOKEN)
        rogues.append(
            (
                await flood.open(
                    {"category": "administrative", "district_ids": [other_id], "format": "opus"}
                )
            )["broadcast_id"]
        )
        await _send_all(flood, speech * 2)
        with pytest.raises(LiveError) as flooded:
            await flood.wait_for("ended", 10)
        assert flooded.value.code == "live_flood"
        assert any(e.get("error") == "live_flood" for e in flood.events if e["type"] == "warning")
        await flood.close()

        await speaking
        ended = await good.stop()
    finally:
        await good.close()
    assert ended["reason"] == "stopped"
    assert ended["frames"] == 3 * len(speech)
    await observer.until(
        lambda: all(_final(observer, started["broadcast_id"], s) is not None for s in speakers),
        30,
    )
    for speaker in speakers:
        final = _final(observer, started["broadcast_id"], speaker)
        assert final.status is AckStatus.PLAYED, (speaker, final)
        assert final.frames_lost == 0, (speaker, final)
    async with gateway.client() as client:
        for broadcast_id in rogues:
            summary = await wait_until_final(client, broadcast_id, limit_s=60)
            assert summary["speakers"]["played"] == 0
        assert (await client.get("/readyz")).status_code == 200
    assert others


async def test_maeul_live_speaks_a_file_to_a_village(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer, tmp_path: Path
) -> None:
    async with gateway.client() as client:
        village = (await client.get("/api/v1/villages", params={"limit": 1})).json()["items"][0]
        listed = (await client.get("/api/v1/speakers/fleet")).json()["items"]
    speakers = [
        s["code"] for s in listed if s["village_code"] == village["code"] and "opus" in s["codecs"]
    ]
    assert speakers
    path = make_recording(tmp_path / "talk.m4a", "m4a", seconds=1.0)
    env = {**os.environ, "GATEWAY_URL": gateway.url, "GATEWAY_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "maeul.cli", "live", "--file", str(path)]

    both = await asyncio.create_subprocess_exec(
        *cli, "--village", "1", "--district", "1", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert await both.wait() == 2

    spoken = await asyncio.create_subprocess_exec(
        *cli,
        "--village",
        str(village["id"]),
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await spoken.communicate()
    assert spoken.returncode == 0, err.decode()
    ended = json.loads(out)
    assert ended["reason"] == "stopped"
    assert "실시간 방송 시작" in err.decode()
    await observer.until(
        lambda: all(_final(observer, ended["broadcast_id"], s) is not None for s in speakers), 30
    )
    for speaker in speakers:
        final = _final(observer, ended["broadcast_id"], speaker)
        assert final.status is AckStatus.PLAYED, (speaker, final)
        assert final.frames_lost == 0
