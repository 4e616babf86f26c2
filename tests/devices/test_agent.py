"""The device agent: configuration, the player command, and a real broker across restarts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from audio.playback import Pcm
from devices.agent import Agent, main, serve
from devices.agent_config import AgentConfig, ConfigError, example_config, load_config
from devices.hub import Hub
from devices.journal import SqliteJournal
from devices.player import CommandPlayer, PlayerError
from tests.devices.commands import Keys, audio, command, new_keys, opus_clip
from tests.devices.observer import Observer
from wire import contract
from wire.contract import Codec

TOML = """
[broker]
url = "mqtts://broker.example:8883"

[speaker]
city = "jinju"
district = "d01"
village = "d01-v001"
id = "d01-v001-s1"

[journal]
path = "journal.sqlite"
"""


def test_config_comes_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "speaker.toml"
    path.write_text(TOML)
    key = base64.b64encode(new_keys().public).decode()
    config = load_config(
        path,
        {
            "MAEUL_AGENT_BROKER_PASSWORD": "s3cret",
            "MAEUL_AGENT_SPEAKER_CODECS": "mp3",
            "MAEUL_AGENT_GATEWAY_TOKEN": "tok-9f3a1c",
            "MAEUL_AGENT_GATEWAY_PUBLIC_KEYS": f'{{"k1": "{key}"}}',
            "MAEUL_AGENT_PLAYER_COMMAND": "aplay -D plughw:1 -q -t raw -f S16_LE -r 16000 -c 1 -",
            "UNRELATED": "x",
        },
    )
    assert config.identity == contract.SpeakerIdentity(
        city="jinju", district="d01", village="d01-v001", speaker="d01-v001-s1"
    )
    assert config.speaker.codecs == (Codec.MP3,)
    assert config.player.command[:3] == ("aplay", "-D", "plughw:1")
    assert set(config.public_keys()) == {"k1"}
    settings = config.link_settings()
    assert settings.broker.tls
    assert settings.broker.port == 8883
    assert settings.username == "d01-v001-s1"  # one MQTT user per speaker
    assert settings.password == "s3cret"
    assert "s3cret" not in repr(config)
    assert "tok-9f3a1c" not in repr(config.gateway)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("[broker]\nurl = 'mqtt://h'\n", {}),  # no speaker
        (TOML, {"MAEUL_AGENT_BROKER_KEEPALIVE_S": "often"}),
        (TOML, {"MAEUL_AGENT_GATEWAY_PUBLIC_KEYS": "{not json"}),
        (TOML + "\n[extra]\nx = 1\n", {}),
        ("not = [toml", {}),
        (TOML, {"MAEUL_AGENT_PLAYER_COMMAND": ""}),
        (TOML, {"MAEUL_AGENT_PLAYER_COMMAND": 'aplay "unclosed'}),
        (TOML + "\n[player]\ncommand = []\n", {}),
    ],
)
def test_unusable_configs_are_refused(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "speaker.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, env)


def test_a_bad_variable_is_named_in_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "speaker.toml"
    path.write_text(TOML)
    with pytest.raises(ConfigError, match="MAEUL_AGENT_PLAYER_LIVE_LEAD_MS"):
        load_config(path, {"MAEUL_AGENT_PLAYER_LIVE_LEAD_MS": "39"})
    with pytest.raises(ConfigError, match="MAEUL_AGENT_PLAYER_COMMAND"):
        load_config(path, {"MAEUL_AGENT_PLAYER_COMMAND": 'aplay "unclosed'})
    # At start: one line and status 2, never a trace.
    monkeypatch.setenv("MAEUL_AGENT_PLAYER_COMMAND", "")
    assert main(["--config", str(path)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_missing_tls_files_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "speaker.toml"
    path.write_text(TOML)
    config = load_config(path, {"MAEUL_AGENT_BROKER_CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError):
        config.link_settings()


def test_a_public_key_must_be_32_bytes_of_base64(tmp_path: Path) -> None:
    path = tmp_path / "speaker.toml"
    path.write_text(TOML)
    config = load_config(path, {"MAEUL_AGENT_GATEWAY_PUBLIC_KEYS": '{"k1": "c2hvcnQ="}'})
    with pytest.raises(ConfigError):
        config.public_keys()


def test_the_example_config_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--example-config"]) == 0
    path = tmp_path / "speaker.toml"
    path.write_text(capsys.readouterr().out)
    assert load_config(path, {}).speaker.id == "d01-v001-s1"
    assert example_config().startswith("#")


# --- the player command ---------------------------------------------------------------------

PCM = Pcm(bytes(32000), 16000, 1000)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_the_player_command_gets_every_sample() -> None:
    player = CommandPlayer(python("import sys; sys.exit(len(sys.stdin.buffer.read()) != 32000)"))
    assert await player.play(PCM) == 1000


async def test_a_failing_player_raises() -> None:
    with pytest.raises(PlayerError):
        await CommandPlayer(python("import sys; sys.stderr.write('no card'); sys.exit(4)")).play(
            PCM
        )
    with pytest.raises(PlayerError):
        await CommandPlayer(["/nonexistent/player"]).play(PCM)


async def test_cancelling_a_play_stops_the_player() -> None:
    marker = f"maeul-player-{secrets.token_hex(4)}"
    player = CommandPlayer(python(f"import time  # {marker}\ntime.sleep(60)"), stop_grace_s=5)
    playing = asyncio.create_task(player.play(PCM))
    await asyncio.sleep(0.3)
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    ps = await asyncio.create_subprocess_exec("ps", "-eo", "args", stdout=asyncio.subprocess.PIPE)
    out, _ = await ps.communicate()
    assert marker not in out.decode()


# --- against the broker ---------------------------------------------------------------------


class FakePlayer:
    """Counts what it plays; holds each play until released when `hold` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        self.played: list[Pcm] = []
        self.started = asyncio.Event()
        self._release = asyncio.Event()
        if not hold:
            self._release.set()

    async def play(self, pcm: Pcm) -> int:
        self.played.append(pcm)
        self.started.set()
        await self._release.wait()
        return pcm.duration_ms


def agent_config(
    mqtt_url: str, city: str, speaker: str, journal: Path, **gateway: object
) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "broker": {"url": mqtt_url, "session_expiry_s": 60},
            "speaker": {"city": city, "district": "d1", "village": "v1", "id": speaker},
            "journal": {"path": str(journal)},
            "gateway": gateway,
        }
    )


@contextlib.asynccontextmanager
async def running(
    config: AgentConfig, player: FakePlayer, http: httpx.AsyncClient | None = None
) -> AsyncIterator[Agent]:
    journal = SqliteJournal(config.journal.path)
    hub = Hub(connect_concurrency=1)
    client = http or httpx.AsyncClient()
    agent = Agent(config, journal=journal, hub=hub, http=client, player=player)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.ready.wait(), 10)
        yield agent
    finally:
        stop.set()
        await task
        await hub.close()
        if http is None:
            await client.aclose()
        journal.close()


@pytest.fixture
def city() -> str:
    return f"a{secrets.token_hex(3)}"


@pytest.fixture
async def observer(mqtt_url: str, city: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, city) as watching:
        yield watching


def statuses(observer: Observer, command_id: str) -> list[tuple[str, str | None]]:
    return [(a.status.value, a.reason) for a in observer.of(command_id)]


def has(observer: Observer, command_id: str, n: int) -> Callable[[], bool]:
    return lambda: len(observer.of(command_id)) >= n


async def test_the_agent_plays_a_command_once_across_restarts(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    speaker = f"{city}-s1"
    config = agent_config(mqtt_url, city, speaker, tmp_path / "journal.sqlite")
    clip = opus_clip(0.5)
    cmd = command(city=city, at_ms=contract.now_ms(), refs=(audio(clip),))
    topic = contract.command_topic_speaker(city, speaker)
    player = FakePlayer()
    async with running(config, player) as agent:
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, cmd)
        await observer.until(has(observer, cmd.id, 3))
        assert statuses(observer, cmd.id) == [
            ("received", None),
            ("playing", None),
            ("played", None),
        ]
        played = observer.of(cmd.id)[-1]
        assert played.audio_sha256 == hashlib.sha256(clip).hexdigest()
        assert played.level_dbfs is not None
    assert len(player.played) == 1
    assert player.played[0].sample_rate == 16000
    assert abs(player.played[0].duration_ms - 500) <= 30

    again = FakePlayer()
    async with running(config, again) as agent:
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, cmd)
        await observer.until(has(observer, cmd.id, 4))
        # The gateway asking again signs afresh, with a new nonce: answered from the journal.
        await observer.publish(topic, cmd.model_copy(update={"nonce": contract.new_nonce()}))
        await observer.until(has(observer, cmd.id, 5))
    # The same bytes again after the end, across a restart, are a replay: refused and reported.
    assert statuses(observer, cmd.id)[3:] == [("rejected", "replayed"), ("played", None)]
    assert again.played == []


async def test_a_crash_mid_play_is_reported_interrupted_and_never_replayed(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    speaker = f"{city}-s1"
    config = agent_config(mqtt_url, city, speaker, tmp_path / "journal.sqlite")
    cmd = command(city=city, at_ms=contract.now_ms(), refs=(audio(opus_clip(0.5)),))
    topic = contract.command_topic_speaker(city, speaker)
    stuck = FakePlayer(hold=True)
    async with running(config, stuck) as agent:
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, cmd)
        await observer.until(has(observer, cmd.id, 2))
        await stuck.started.wait()
    # The agent went down while the horn played; the journal says "playing".
    assert SqliteJournal(config.journal.path).state_of(cmd.id) == "playing"

    after = FakePlayer()
    async with running(config, after):
        await observer.until(has(observer, cmd.id, 3))
        assert statuses(observer, cmd.id)[-1] == ("failed", "interrupted")
        await observer.publish(topic, cmd)
        await observer.until(has(observer, cmd.id, 4))
    assert statuses(observer, cmd.id)[-1] == ("failed", "interrupted")
    assert after.played == []


async def test_the_agent_checks_signatures_and_fetches_audio_from_the_gateway(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    keys = new_keys()
    clip = opus_clip(0.5)
    requests: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=clip)

    speaker = f"{city}-s1"
    config = agent_config(
        mqtt_url,
        city,
        speaker,
        tmp_path / "journal.sqlite",
        url="https://gw.example",
        token="speaker-token",
        public_keys={keys.key_id: base64.b64encode(keys.public).decode()},
    )
    by_url = contract.AudioRef(
        codec=Codec.OPUS,
        mime_type="audio/ogg",
        sha256=hashlib.sha256(clip).hexdigest(),
        size=len(clip),
        duration_ms=500,
        url="https://gw.example/api/v1/audio/x",
    )
    unsigned = command(city=city, at_ms=contract.now_ms(), refs=(by_url,))
    signed = keys.sign(command(city=city, at_ms=contract.now_ms(), refs=(by_url,)))
    topic = contract.command_topic_speaker(city, speaker)
    player = FakePlayer()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
        running(config, player, http) as agent,
    ):
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, unsigned)
        await observer.publish(topic, signed)
        await observer.until(has(observer, signed.id, 3))
    assert statuses(observer, unsigned.id) == [("rejected", "unsigned")]
    assert [s for s, _ in statuses(observer, signed.id)] == ["received", "playing", "played"]
    assert len(player.played) == 1
    assert [r.headers["authorization"] for r in requests] == ["Bearer speaker-token"]


async def test_a_rotated_key_is_learned_from_the_keyring_and_remembered(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    old, new = new_keys("k-2026-01"), new_keys("k-2026-07")
    rogue, unknown = new_keys("k-rogue"), new_keys("k-unknown")
    clip = opus_clip(0.5)
    ring = contract.KeyRing(
        city=city,
        keys=(
            contract.endorse_key(city, old.key_id, old.public, by=None),
            contract.endorse_key(city, new.key_id, new.public, by=(old.key_id, old.private)),
            # Vouched for by a key this speaker never trusted: not learned.
            contract.endorse_key(
                city, rogue.key_id, rogue.public, by=(unknown.key_id, unknown.private)
            ),
        ),
    )
    asked: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/api/v1/keys/ring":
            return httpx.Response(200, content=ring.model_dump_json().encode())
        return httpx.Response(404)

    speaker = f"{city}-s1"
    config = agent_config(
        mqtt_url,
        city,
        speaker,
        tmp_path / "journal.sqlite",
        url="https://gw.example",
        public_keys={old.key_id: base64.b64encode(old.public).decode()},
    )
    topic = contract.command_topic_speaker(city, speaker)

    def signed_by(keys: Keys) -> contract.Command:
        return keys.sign(command(city=city, at_ms=contract.now_ms(), refs=(audio(clip),)))

    after_rotation, forged = signed_by(new), signed_by(rogue)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
        running(config, FakePlayer(), http) as agent,
    ):
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, after_rotation)
        await observer.until(has(observer, after_rotation.id, 1))
        await observer.until(has(observer, after_rotation.id, 3))
        await observer.publish(topic, forged)
        await observer.until(has(observer, forged.id, 1))
    assert [s for s, _ in statuses(observer, after_rotation.id)] == [
        "received",
        "playing",
        "played",
    ]
    assert statuses(observer, forged.id) == [("rejected", "unknown_key")]
    assert asked == ["/api/v1/keys/ring"] * 2, "asked once per key id it did not trust"

    # Restarted, the speaker still trusts the learned key without asking again.
    asked.clear()
    again = signed_by(new)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
        running(config, FakePlayer(), http) as agent,
    ):
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, again)
        await observer.until(has(observer, again.id, 3))
    assert statuses(observer, again.id)[-1] == ("played", None)
    assert asked == []


async def test_a_revoked_key_is_refused_and_stays_refused_after_a_restart(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    anchor, stolen, fresh = new_keys("k-0"), new_keys("k-stolen"), new_keys("k-fresh")
    # The gateway's ring after revoking `stolen`: it started `fresh`, which signs the revocation.
    ring = contract.KeyRing(
        city=city,
        keys=(
            contract.endorse_key(city, anchor.key_id, anchor.public, by=None),
            contract.endorse_key(
                city, fresh.key_id, fresh.public, by=(anchor.key_id, anchor.private)
            ),
        ),
        revoked=(contract.revoke_key(city, stolen.key_id, by=(fresh.key_id, fresh.private)),),
    )

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/keys/ring":
            return httpx.Response(200, content=ring.model_dump_json().encode())
        return httpx.Response(404)

    speaker = f"{city}-s1"
    config = agent_config(
        mqtt_url,
        city,
        speaker,
        tmp_path / "journal.sqlite",
        url="https://gw.example",
        # Configured with the stolen key too: the revocation overrides the configuration.
        public_keys={k.key_id: base64.b64encode(k.public).decode() for k in (anchor, stolen)},
    )
    topic = contract.command_topic_speaker(city, speaker)
    clip = opus_clip(0.5)

    def signed_by(keys: Keys) -> contract.Command:
        return keys.sign(command(city=city, at_ms=contract.now_ms(), refs=(audio(clip),)))

    next_command, forged = signed_by(fresh), signed_by(stolen)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
        running(config, FakePlayer(), http) as agent,
    ):
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, next_command)  # a new key id: the ring is fetched
        await observer.until(has(observer, next_command.id, 1))
        await observer.publish(topic, forged)
        await observer.until(has(observer, forged.id, 1))
    assert statuses(observer, next_command.id)[0] == ("received", None)
    assert statuses(observer, forged.id) == [("rejected", "revoked_key")]

    again = signed_by(stolen)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(503))) as http,
        running(config, FakePlayer(), http) as agent,
    ):
        await observer.until(lambda: agent.link.online)
        await observer.publish(topic, again)
        await observer.until(has(observer, again.id, 1))
    assert statuses(observer, again.id) == [("rejected", "revoked_key")], "kept in the journal"


async def test_the_agent_signs_its_played_acks_with_its_own_receipt_key(
    mqtt_url: str,
    city: str,
    observer: Observer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    speaker = f"{city}-s1"
    key_file = tmp_path / "keys" / "receipt.key"
    path = tmp_path / "speaker.toml"
    path.write_text(
        f'[broker]\nurl = "{mqtt_url}"\n'
        f'[speaker]\ncity = "{city}"\ndistrict = "d1"\nvillage = "v1"\nid = "{speaker}"\n'
        f'receipt_key_file = "{key_file}"\n'
        f'[journal]\npath = "{tmp_path / "journal.sqlite"}"\n'
    )
    # The installer enrolls what this prints; the key is made on the spot and kept.
    assert main(["--config", str(path), "--receipt-public-key"]) == 0
    enrollment = json.loads(capsys.readouterr().out)
    public = base64.b64decode(enrollment["public_key"])
    assert contract.verify_receipt_key_proof(
        city, speaker, enrollment["public_key"], enrollment["proof"]
    )
    assert key_file.exists()

    await observer.watch_presence([speaker])
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(load_config(path, {}), stop, player=FakePlayer()))
    try:
        await observer.until(lambda: observer.last_presence(speaker) == "online")
        cmd = command(city=city, at_ms=contract.now_ms(), refs=(audio(opus_clip(0.5)),))
        await observer.publish(contract.command_topic_speaker(city, speaker), cmd)
        await observer.until(lambda: bool(observer.speakers_with(cmd.id, "played")))
    finally:
        stop.set()
        await serving
    played = observer.of(cmd.id)[-1]
    receipt = contract.receipt_of(played)
    assert receipt is not None
    assert receipt.sig is not None
    assert contract.verify_receipt(receipt, public)
