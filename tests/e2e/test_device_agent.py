"""End to end with the real device agent: `python -m devices.agent` processes with their own
configuration files, a gateway process and Mosquitto. Each agent's player command writes the PCM
it is given to a file, which must hold the chime and the talk, found by cross-correlation with
what was sent, for a recorded message and for a live talk, before and after the agents restart."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from audio.chimes import chime
from audio.decode import Limits, decode_file
from devices.lead import LEAD
from maeul.live import LiveClient
from tests.e2e.harness import (
    TOKEN,
    GatewayProcess,
    broadcast_to,
    speaker_states,
    wait_online,
    wait_until_final,
)
from tests.media import make_recording, speech_like
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CITY = "jinju"
RATE = 16000
# Found where the normalised cross-correlation peaks at least this high; unrelated speech-like
# sound scores below 0.2, what was sent about 0.97 after Opus and back.
FOUND = 0.8

Samples = npt.NDArray[np.float64]


@dataclass
class AgentProcess:
    """One `python -m devices.agent` with its configuration file; its player writes to a file
    of the run's own (the player command comes from ``MAEUL_AGENT_PLAYER_COMMAND``)."""

    config: Path
    folder: Path
    runs: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def heard(self) -> Path:
        return self.folder / f"heard-{self.runs}.pcm"

    def start(self) -> None:
        self.runs += 1
        player = shlex.join(["sh", "-c", f"cat >> {shlex.quote(str(self.heard))}"])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
            "MAEUL_AGENT_PLAYER_COMMAND": player,
            "MAEUL_AGENT_LOG_LEVEL": "WARNING",
        }
        with (self.folder / "agent.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devices.agent", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pcm(self) -> Samples:
        data = self.heard.read_bytes() if self.heard.exists() else b""
        return np.frombuffer(data, dtype="<i2").astype(np.float64)


def match(heard: Samples, sent: Samples) -> tuple[float, int]:
    """Where `sent` is in `heard`: the peak of their normalised cross-correlation, and its
    offset in samples. `heard` may end a few milliseconds early: a codec holds back the last
    partial frame."""
    heard = np.concatenate([heard, np.zeros(len(sent))])
    reference = sent - sent.mean()
    size = 1 << (len(heard) + len(reference) - 2).bit_length()
    spectrum = np.fft.rfft(heard, size) * np.conj(np.fft.rfft(reference, size))
    products = np.fft.irfft(spectrum, size)[: len(heard) - len(reference) + 1]
    running = np.concatenate([[0.0], np.cumsum(heard * heard)])
    energy = running[len(reference) :] - running[: -len(reference)]
    score = products / (np.linalg.norm(reference) * np.sqrt(np.maximum(energy, 1e-9)))
    best = int(np.argmax(score))
    return float(score[best]), best


def voiced(samples: npt.NDArray[np.floating[Any]]) -> Samples:
    """Talk without its leading and trailing silence, as 16-bit sample values."""
    values = np.asarray(samples, dtype=np.float64) * 32767
    active = np.nonzero(np.abs(values) > 30)[0]
    return values[active[0] : active[-1] + 1]


def uploaded(path: Path) -> Samples:
    """What a recording holds, at the speakers' rate."""
    _, samples = decode_file(path, Limits(max_bytes=1 << 24, max_duration_s=60, timeout_s=30), RATE)
    return voiced(samples)


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code=CITY
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        city_code=CITY,
        extra_env={"GATEWAY_LIVE_JITTER_MS": "250", "GATEWAY_POLL_INTERVAL_S": "0.2"},
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    _stop(started)


def _stop(agents: list[AgentProcess]) -> None:
    for agent in agents:
        agent.terminate()
    for agent in agents:
        agent.wait()


async def _village(client: httpx.AsyncClient) -> tuple[int, list[dict[str, Any]]]:
    """A village with two speakers that play Opus, and those speakers."""
    listed = (await client.get("/api/v1/speakers/fleet")).json()["items"]
    villages = (await client.get("/api/v1/villages", params={"limit": 100})).json()["items"]
    for village in villages:
        mine = [s for s in listed if s["village_code"] == village["code"]]
        if len(mine) == 2 and all("opus" in s["codecs"] for s in mine):
            return village["id"], mine
    raise AssertionError("the tiny city has a village of two Opus speakers")


def _config(
    folder: Path,
    mqtt_url: str,
    gateway: GatewayProcess,
    speaker: dict[str, Any],
    keys: list[dict[str, str]],
) -> Path:
    """The agent's configuration, as an installer writes it: the broker, the speaker, its
    journal, and the gateway with its signing keys."""
    folder.mkdir()
    table = ", ".join(f'"{k["key_id"]}" = "{k["public_key"]}"' for k in keys)
    path = folder / "speaker.toml"
    path.write_text(
        f'[broker]\nurl = "{mqtt_url}"\n\n'
        f'[speaker]\ncity = "{CITY}"\ndistrict = "{speaker["district_code"]}"\n'
        f'village = "{speaker["village_code"]}"\nid = "{speaker["code"]}"\n\n'
        f'[journal]\npath = "{folder / "journal.sqlite"}"\n\n'
        f'[gateway]\nurl = "{gateway.url}"\npublic_keys = {{ {table} }}\n',
        encoding="utf-8",
    )
    return path


async def _speak_live(gateway: GatewayProcess, village_id: int, talk: Samples) -> str:
    """Say `talk` live to the village as 16 kHz PCM, at the pace of speech; the broadcast id."""
    pcm = talk.round().astype("<i2").tobytes()
    chunks = [pcm[offset : offset + 640] for offset in range(0, len(pcm), 640)]
    client = LiveClient(gateway.url, TOKEN, stamped=True)
    try:
        await client.open(
            {"category": "village_notice", "village_ids": [village_id], "format": "pcm"}
        )
        await client.wait_for("ready", 30)
        await client.send_paced(chunks)
        ended = await client.stop()
    finally:
        await client.close()
    assert ended["reason"] == "stopped"
    return str(ended["broadcast_id"])


async def _run_once(
    gateway: GatewayProcess,
    agents: list[AgentProcess],
    village_id: int,
    recording: Path,
    live_talk: Samples,
) -> None:
    async with gateway.client() as client:
        await wait_online(client, len(agents), exactly=True)
        clip = await asyncio.to_thread(recording.read_bytes)
        sent = await broadcast_to(client, clip, [village_id])
        summary = await wait_until_final(client, sent["id"], limit_s=60)
        assert {state for state, _ in speaker_states(summary).values()} == {"played"}, summary
        live_id = await _speak_live(gateway, village_id, live_talk)
        summary = await wait_until_final(client, live_id, limit_s=60)
    for village in summary["village_deliveries"]:
        for speaker in village["speakers"]:
            assert speaker["state"] == "played", speaker
            assert speaker["live_frames_lost"] == 0, speaker
            # Mouth to horn: from the capture to the horn, the agent's player lead included.
            assert speaker["live_mouth_p95_ms"] >= speaker["live_mouth_p50_ms"] >= LEAD.floor_ms


def _check_heard(agent: AgentProcess, recorded_talk: Samples, live_talk: Samples) -> None:
    heard = agent.pcm()
    start_chime = chime("start", "village_notice", rate=RATE, target_lufs=-16.0, peak_dbtp=-1.0)
    administrative = chime("start", "administrative", rate=RATE, target_lufs=-16.0, peak_dbtp=-1.0)
    score, recorded_at = match(heard, recorded_talk)
    assert score >= FOUND, f"the recorded talk ({score:.2f})"
    score, live_at = match(heard, live_talk)
    assert score >= FOUND, f"the live talk ({score:.2f})"
    assert live_at > recorded_at
    score, _ = match(heard[:recorded_at], administrative.astype(np.float64))
    assert score >= FOUND, f"the recording's chime, before its talk ({score:.2f})"
    score, _ = match(heard[recorded_at:live_at], start_chime.astype(np.float64))
    assert score >= FOUND, f"the live chime, before its talk ({score:.2f})"


async def test_real_agents_play_a_recording_and_a_live_talk_across_a_restart(
    gateway: GatewayProcess, mqtt_url: str, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    async with gateway.client() as client:
        village_id, speakers = await _village(client)
        keys = (await client.get("/api/v1/keys")).json()
    for speaker in speakers:
        folder = tmp_path / speaker["code"]
        agents.append(AgentProcess(_config(folder, mqtt_url, gateway, speaker, keys), folder))
    for agent in agents:
        agent.start()

    before: list[Samples] = []
    for run, seed in ((1, 7), (2, 8)):
        recording = make_recording(tmp_path / f"message-{run}.m4a", "m4a", seconds=2.0, seed=seed)
        recorded_talk = uploaded(recording)
        live_talk = voiced(speech_like(2.0, RATE, seed=seed + 100))
        await _run_once(gateway, agents, village_id, recording, live_talk)
        _stop(agents)
        for agent in agents:
            _check_heard(agent, recorded_talk, live_talk)
            for earlier in before:  # what played before the restart does not play again
                assert match(agent.pcm(), earlier)[0] < FOUND
        before += [recorded_talk, live_talk]
        if run == 1:
            async with gateway.client() as client:
                await wait_online(client, 0, exactly=True)
            for agent in agents:
                agent.start()
