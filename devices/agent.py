"""The agent of a real speaker (a Linux box beside the horn amplifier): config, journal, player.

Run it as ``python -m devices.agent --config speaker.toml``. It keeps one MQTT link up on its own
(`devices.link`), decides with `SpeakerCore`, and plays through the sound card by piping 16-bit
mono PCM into a player command (``aplay`` by default). Every state change is written to a SQLite
journal (WAL, synchronous=FULL: fsync before the call returns) before it is acknowledged, and a
command's PUBACK goes back to the broker only once it is journaled, so neither a crash nor a
power cut makes it play twice or vanish unanswered: what was playing is reported
``failed``/``interrupted`` after the restart, what was waiting (pre-empted ones included) is
queued again.

Configuration: a TOML file (see `example_config`), then environment variables named
``MAEUL_AGENT_<SECTION>_<KEY>`` (``MAEUL_AGENT_BROKER_PASSWORD``, ``MAEUL_AGENT_GATEWAY_TOKEN``,
...), which win. Lists and tables in the environment are JSON; a player command may also be a
shell-style string.

Exceptions::

    ConfigError     the configuration file or environment is not usable
    PlayerError     the player command failed (the command is acked failed/player_error)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import shlex
import signal
import sqlite3
import ssl
import sys
import tomllib
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from audio.playback import Pcm
from devices.keyring import KeyLearner, http_keyring
from devices.link import BrokerAddress, Hub, Incoming, Link, LinkSettings, tls_context
from devices.sound import Fetcher, Sound, SoundError, decode_sound
from devices.speaker import (
    Ack,
    Action,
    JournalEntry,
    Play,
    Prepare,
    Proof,
    SpeakerCore,
    Stop,
    merge_entry,
)
from wire import contract
from wire.contract import AckStatus, Codec, FailReason

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "MAEUL_AGENT_"
TICK_S: Final = 5.0
PLAYER_SLACK_S: Final = 10.0
PRUNE_EVERY_S: Final = 6 * 3600.0
# Journal entries are kept this long after their command expired: a replay of an expired
# command is refused on its expiry anyway, the margin covers a clock that jumps back.
KEEP_AFTER_EXPIRY_MS: Final = 7 * 24 * 3600 * 1000
_PLAYER_CHUNK: Final = 32 * 1024
DEFAULT_PLAYER: Final = ("aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", "16000", "-c", "1", "-")


class ConfigError(Exception):
    """The configuration file or environment is not usable."""


class PlayerError(Exception):
    """The player command failed."""


# --------------------------------------------------------------------------------------------
# Configuration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    url: str = Field(description="mqtt://host:1883 or mqtts://host:8883")
    username: str | None = None  # defaults to the speaker id when a password is set
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None  # TLS client certificate, instead of (or with) a password
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=3600, ge=0)
    heartbeat_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=15.0, gt=0)


class SpeakerConfig(_Section):
    city: str
    district: str
    village: str
    id: str
    codecs: tuple[Codec, ...] = (Codec.OPUS, Codec.MP3)
    firmware: str | None = "maeul-agent/1"
    # This speaker's own Ed25519 receipt key (base64 of the raw 32-byte private key), made on
    # the first start when the file does not exist; `--receipt-public-key` prints the public
    # half to enroll with the gateway. Without it, played acks carry no signed receipt.
    receipt_key_file: Path | None = None


class JournalConfig(_Section):
    path: Path = Path("/var/lib/maeul/journal.sqlite")


class GatewayConfig(_Section):
    url: str | None = None  # audio is fetched only from this origin, with the token
    token: SecretStr | None = None
    # key id -> base64 of a raw 32-byte Ed25519 public key; when any is set, unsigned
    # commands and commands with a bad signature are rejected.
    public_keys: dict[str, str] = Field(default_factory=dict)


class PlayerConfig(_Section):
    command: tuple[str, ...] = DEFAULT_PLAYER
    sample_rate: int = Field(default=16000, ge=8000, le=48000)


class AgentConfig(_Section):
    broker: BrokerConfig
    speaker: SpeakerConfig
    journal: JournalConfig = JournalConfig()
    gateway: GatewayConfig = GatewayConfig()
    player: PlayerConfig = PlayerConfig()

    @property
    def identity(self) -> contract.SpeakerIdentity:
        s = self.speaker
        return contract.SpeakerIdentity(
            city=s.city, district=s.district, village=s.village, speaker=s.id
        )

    def public_keys(self) -> dict[str, bytes]:
        keys = {}
        for key_id, text in self.gateway.public_keys.items():
            try:
                raw = base64.b64decode(text, validate=True)
            except binascii.Error as exc:
                raise ConfigError(f"gateway.public_keys.{key_id} is not base64") from exc
            if len(raw) != 32:
                raise ConfigError(f"gateway.public_keys.{key_id} is not a 32-byte Ed25519 key")
            keys[key_id] = raw
        return keys

    def link_settings(self) -> LinkSettings:
        b = self.broker
        broker = BrokerAddress.parse(b.url)
        password = b.password.get_secret_value() if b.password is not None else None
        username = b.username or (self.speaker.id if password is not None else None)
        tls = None
        if broker.tls:
            try:
                tls = tls_context(
                    ca_file=str(b.ca_file) if b.ca_file else None,
                    cert_file=str(b.cert_file) if b.cert_file else None,
                    key_file=str(b.key_file) if b.key_file else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the broker's TLS files: {exc}") from exc
        return LinkSettings(
            broker=broker,
            username=username,
            password=password,
            tls=tls,
            keepalive_s=b.keepalive_s,
            session_expiry_s=b.session_expiry_s,
            heartbeat_s=b.heartbeat_s,
            connect_timeout_s=b.connect_timeout_s,
            firmware=self.speaker.firmware,
        )


def load_receipt_key(path: Path) -> bytes:
    """The speaker's receipt key from `path`, made there (mode 0600) when the file is missing."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        private, _ = contract.new_receipt_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(base64.b64encode(private).decode("ascii") + "\n")
        log.info("수신 확인 서명 키 생성 / receipt key made at %s", path)
        return private
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read the receipt key {path}: {exc}") from exc
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"the receipt key {path} is not base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"the receipt key {path} is not a raw 32-byte Ed25519 key")
    return raw


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON: {text[:60]!r}") from exc
    return raw


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The TOML file at `path` (if any), overridden by MAEUL_AGENT_<SECTION>_<KEY> variables."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    for section, info in AgentConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for key in model.model_fields:
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name not in environ:
                continue
            value = _env_value(environ[name])
            if isinstance(value, str) and key in ("command", "codecs"):
                value = shlex.split(value) if key == "command" else value.replace(",", " ").split()
            data.setdefault(section, {})[key] = value
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"configuration: {where}: {first['msg']}") from None


def example_config() -> str:
    return """\
# Maeul speaker agent. Secrets may come from the environment instead:
# MAEUL_AGENT_BROKER_PASSWORD, MAEUL_AGENT_GATEWAY_TOKEN.
[broker]
url = "mqtts://broker.example.go.kr:8883"
# username defaults to the speaker id
password = "change-me"
ca_file = "/etc/maeul/ca.pem"
# or a client certificate:
# cert_file = "/etc/maeul/speaker.crt"
# key_file = "/etc/maeul/speaker.key"

[speaker]
city = "jinju"
district = "d01"
village = "d01-v001"
id = "d01-v001-s1"
codecs = ["opus", "mp3"]
# made on the first start; enroll its public half (--receipt-public-key) with the gateway
receipt_key_file = "/var/lib/maeul/receipt.key"

[journal]
path = "/var/lib/maeul/journal.sqlite"

[gateway]
url = "https://maeul.example.go.kr"
token = "change-me"
public_keys = { k1 = "base64 of the gateway's Ed25519 public key" }

[player]
command = ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", "16000", "-c", "1", "-"]
sample_rate = 16000
"""


# --------------------------------------------------------------------------------------------
# The durable journal

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS commands (
    command_id    TEXT PRIMARY KEY,
    broadcast_id  TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT,
    audio_sha256  TEXT,
    played_ms     INTEGER,
    level_dbfs    REAL,
    expires_at_ms INTEGER,
    payload       BLOB,
    updated_at_ms INTEGER NOT NULL,
    nonce         TEXT
);
CREATE TABLE IF NOT EXISTS learned_keys (
    key_id        TEXT PRIMARY KEY,
    public_key    BLOB NOT NULL,
    learned_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_keys (
    key_id        TEXT PRIMARY KEY,
    revoked_at_ms INTEGER NOT NULL
)
"""
_COLUMNS: Final = (
    "command_id, broadcast_id, state, reason, audio_sha256, played_ms, level_dbfs, "
    "expires_at_ms, payload, nonce"
)
# What a restart must settle: waiting, playing, or pre-empted and waiting to play again.
_UNFINISHED_SQL: Final = "('received', 'playing', 'preempted')"
# Acks after which a command id never plays on this speaker: its sound can go.
_FINAL: Final = frozenset({AckStatus.PLAYED, AckStatus.FAILED, AckStatus.REJECTED})


class SqliteJournal:
    """The speaker's journal on disk. Each `record` is its own transaction, synced to disk (WAL,
    synchronous=FULL) before it returns. Blocking: call it from one worker thread."""

    def __init__(self, path: Path, *, clock: Callable[[], int] = contract.now_ms) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(commands)")}
        if "nonce" not in columns:  # a journal written before replays were told apart
            self._db.execute("ALTER TABLE commands ADD COLUMN nonce TEXT")

    def close(self) -> None:
        self._db.close()

    def state_of(self, command_id: str) -> str | None:
        row = self._db.execute(
            "SELECT state FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return str(row[0]) if row is not None else None

    def lookup(self, command_id: str) -> JournalEntry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return _entry(row) if row is not None else None

    def record(
        self,
        command_id: str,
        broadcast_id: str,
        state: str,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        expires_at_ms: int | None = None,
        payload: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        entry = merge_entry(
            self.lookup(command_id),
            command_id,
            broadcast_id,
            state,
            reason=reason,
            proof=proof,
            expires_at_ms=expires_at_ms,
            payload=payload,
            nonce=nonce,
        )
        p = entry.proof
        # An upsert, not INSERT OR REPLACE: the row keeps its rowid, which orders recovery.
        self._db.execute(
            f"INSERT INTO commands ({_COLUMNS}, updated_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(command_id) DO UPDATE SET state=excluded.state, "
            "reason=excluded.reason, audio_sha256=excluded.audio_sha256, "
            "played_ms=excluded.played_ms, level_dbfs=excluded.level_dbfs, "
            "expires_at_ms=excluded.expires_at_ms, payload=excluded.payload, "
            "updated_at_ms=excluded.updated_at_ms, nonce=excluded.nonce",
            (
                entry.command_id,
                entry.broadcast_id,
                str(entry.state),
                str(entry.reason) if entry.reason is not None else None,
                p.audio_sha256 if p else None,
                p.played_ms if p else None,
                p.level_dbfs if p else None,
                entry.expires_at_ms,
                entry.payload,
                entry.nonce,
                self._clock(),
            ),
        )

    def learned_keys(self) -> dict[str, bytes]:
        """Signing keys learned from the gateway's keyring (see `Agent`), by key id."""
        rows = self._db.execute("SELECT key_id, public_key FROM learned_keys").fetchall()
        return {str(k): bytes(v) for k, v in rows}

    def remember_keys(self, keys: Mapping[str, bytes]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO learned_keys (key_id, public_key, learned_at_ms) VALUES (?,?,?)",
            [(k, v, self._clock()) for k, v in keys.items()],
        )

    def revoked_keys(self) -> set[str]:
        """Signing keys the gateway's key ring revoked: never trusted again, even if configured."""
        return {str(k) for (k,) in self._db.execute("SELECT key_id FROM revoked_keys")}

    def forget_keys(self, revoked: Iterable[str], dropped: Iterable[str]) -> None:
        """Remember `revoked` for good, and stop trusting `dropped` (learned keys)."""
        self._db.executemany(
            "INSERT OR IGNORE INTO revoked_keys (key_id, revoked_at_ms) VALUES (?,?)",
            [(k, self._clock()) for k in revoked],
        )
        self._db.executemany("DELETE FROM learned_keys WHERE key_id = ?", [(k,) for k in dropped])

    def unfinished(self) -> list[JournalEntry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE state IN {_UNFINISHED_SQL} ORDER BY rowid"
        ).fetchall()
        return [_entry(row) for row in rows]

    def prune(self, before_ms: int) -> int:
        """Forget finished commands that expired before `before_ms`."""
        cursor = self._db.execute(
            f"DELETE FROM commands WHERE state NOT IN {_UNFINISHED_SQL} "
            "AND expires_at_ms IS NOT NULL AND expires_at_ms < ?",
            (before_ms,),
        )
        return cursor.rowcount


def _entry(row: Sequence[Any]) -> JournalEntry:
    sha, played_ms, level = row[4], row[5], row[6]
    return JournalEntry(
        command_id=row[0],
        broadcast_id=row[1],
        state=row[2],
        reason=row[3],
        proof=Proof(sha, int(played_ms or 0), level) if sha is not None else None,
        expires_at_ms=row[7],
        payload=bytes(row[8]) if row[8] is not None else None,
        nonce=row[9],
    )


# --------------------------------------------------------------------------------------------
# Sound output


class Player(Protocol):
    async def play(self, pcm: Pcm) -> int:
        """Play to the end and return the milliseconds played; cancelling stops the sound."""
        ...


class CommandPlayer:
    """Pipes raw PCM into a player command's stdin (``aplay -t raw -f S16_LE -r 16000 -c 1 -``)."""

    def __init__(self, command: Sequence[str], *, stop_grace_s: float = 2.0) -> None:
        if not command:
            raise ConfigError("the player command is empty")
        self.command = tuple(command)
        self._grace = stop_grace_s

    async def play(self, pcm: Pcm) -> int:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise PlayerError(f"cannot start {self.command[0]}: {exc}") from exc
        assert proc.stdin is not None
        assert proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        try:
            view = memoryview(pcm.samples)
            for offset in range(0, len(view), _PLAYER_CHUNK):
                proc.stdin.write(view[offset : offset + _PLAYER_CHUNK])
                await proc.stdin.drain()
            proc.stdin.close()
            code = await proc.wait()
        except (BrokenPipeError, ConnectionResetError):
            code = await proc.wait()
        except BaseException:
            await self._terminate(proc)
            errors.cancel()
            raise
        detail = (await errors).decode(errors="replace").strip()
        if code != 0:
            raise PlayerError(f"{self.command[0]} exited with {code}: {detail[:200]}")
        return pcm.duration_ms

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self._grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------------------------
# The agent

_T = TypeVar("_T")


class Agent:
    """One real speaker: the core, driven from a single worker thread (its journal blocks), the
    link, the fetcher and the player. The caller owns the journal, the hub and the HTTP client
    (see `serve`)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        journal: SqliteJournal,
        hub: Hub,
        http: httpx.AsyncClient,
        player: Player | None = None,
        clock: Callable[[], int] = contract.now_ms,
        receipt_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.identity = config.identity
        self.journal = journal
        keys = config.public_keys()
        # Keys from the configuration are the trust anchor; learned ones only extend it.
        self._verify = (
            contract.SignatureCheck(
                {**journal.learned_keys(), **keys}, revoked=journal.revoked_keys()
            )
            if keys
            else None
        )
        self.core = SpeakerCore(
            self.identity,
            codecs=config.speaker.codecs,
            journal=journal,
            verify=self._verify,
            clock=clock,
            # The agent plays files through its player command; live streams need the
            # simulator's (or a device's own) stream player, so it refuses them, visibly.
            plays_live=False,
            receipt_key=receipt_key,
        )
        self._http = http
        # A rotated key is learned from the gateway's key ring, as the simulated fleet does.
        self._keys = (
            KeyLearner(
                self._verify,
                self.identity.city,
                http_keyring(http, config.gateway.url),
                clock=clock,
                remember=self._remember_keys,
                forget=self._forget_keys,
            )
            if self._verify is not None and config.gateway.url is not None
            else None
        )
        self.link = Link(
            hub,
            config.link_settings(),
            self.identity,
            on_message=self._on_message,
            codecs=config.speaker.codecs,
            manual_ack=True,
        )
        self._fetcher = Fetcher(
            client=http, token=_secret(config.gateway.token), gateway_url=config.gateway.url
        )
        self._player = player or CommandPlayer(config.player.command)
        self._clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maeul-journal")
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[Incoming] = asyncio.Queue()
        self._sounds: dict[str, Sound] = {}
        self._plays: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Settle what the journal left unfinished, then serve until `stop` is set."""
        try:
            await self._in_worker(self.journal.prune, self._clock() - KEEP_AFTER_EXPIRY_MS)
            await self._drive(self.core.recover)
            self.link.start()
            self._spawn(self._consume(), "agent-inbox")
            self._spawn(self._tick(), "agent-tick")
            self.ready.set()
            log.info("스피커 %s 에이전트 시작 / agent started", self.identity.speaker)
            await stop.wait()
        finally:
            for task in [*self._tasks, *self._plays.values()]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._plays.values(), return_exceptions=True)
            await self.link.close()
            self._worker.shutdown(wait=True)
            log.info("스피커 %s 에이전트 종료 / agent stopped", self.identity.speaker)

    def _on_message(self, incoming: Incoming) -> None:
        self._inbox.put_nowait(incoming)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _in_worker(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, partial(fn, *args, **kwargs))

    async def _drive(self, fn: Callable[..., list[Action]], *args: Any, **kwargs: Any) -> None:
        """Run one core event in the journal's thread, then carry out its actions in order."""
        async with self._lock:
            try:
                actions = await self._in_worker(fn, *args, **kwargs)
            except Exception:
                log.exception("스피커 처리 실패 / the speaker core failed (%s)", fn.__name__)
                return
            self._carry_out(actions)

    async def _consume(self) -> None:
        while True:
            incoming = await self._inbox.get()
            if self._keys is not None and self._keys.unknown(incoming.payload):
                # Signed by a key this speaker has not met (after a rotation): held aside while
                # the key ring is asked, so it does not hold up the commands behind it.
                self._spawn(self._settle_then_accept(self._keys, incoming), "keys")
                continue
            await self._accept(incoming)

    async def _settle_then_accept(self, keys: KeyLearner, incoming: Incoming) -> None:
        await keys.settle(incoming.payload, self.identity.speaker)
        await self._accept(incoming)

    async def _accept(self, incoming: Incoming) -> None:
        async with self._lock:
            try:
                actions = await self._in_worker(self.core.on_command, incoming.payload)
            except Exception:
                # Not journaled (a full or broken disk?): no PUBACK, so the broker keeps the
                # command and hands it over again on the next connection.
                log.exception("명령 처리 실패 / could not handle a command")
                return
            # Journaled: now the broker may forget it.
            self.link.acknowledge(incoming)
            self._carry_out(actions)

    async def _remember_keys(self, keys: dict[str, bytes]) -> None:
        await self._in_worker(self.journal.remember_keys, keys)

    async def _forget_keys(self, revoked: frozenset[str], dropped: frozenset[str]) -> None:
        await self._in_worker(self.journal.forget_keys, revoked, dropped)

    async def _tick(self) -> None:
        since_prune = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            await self._drive(self.core.on_tick)
            since_prune += TICK_S
            if since_prune >= PRUNE_EVERY_S:
                since_prune = 0.0
                await self._in_worker(self.journal.prune, self._clock() - KEEP_AFTER_EXPIRY_MS)

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Ack):
                if action.message.status in _FINAL:
                    self._sounds.pop(action.message.command_id, None)
                self.link.publish_ack(action.message)
            elif isinstance(action, Prepare):
                self._spawn(self._prepare(action), f"prepare-{action.command_id[:8]}")
            elif isinstance(action, Play):
                command_id = action.command.id
                self._plays[command_id] = self._spawn(self._play(command_id), "play")
            elif isinstance(action, Stop):
                # Cancelled or pre-empted alike, the sound stops now (cancelling the task
                # stops the player). A pre-empted command keeps its decoded sound: it plays
                # again from the start.
                task = self._plays.pop(action.command_id, None)
                if task is not None:
                    task.cancel()
                if action.reason is not FailReason.PREEMPTED:
                    self._sounds.pop(action.command_id, None)

    async def _prepare(self, action: Prepare) -> None:
        try:
            data = action.data
            if data is None:
                data = await self._fetcher.fetch(action.audio)
            sound = await asyncio.to_thread(
                decode_sound, data, sample_rate=self.config.player.sample_rate
            )
        except SoundError as exc:
            log.warning("command %s: %s", action.command_id, exc)
            await self._drive(self.core.on_prepare_failed, action.command_id, exc.reason)
            return
        except Exception:
            log.exception("command %s: preparing the audio failed", action.command_id)
            await self._drive(
                self.core.on_prepare_failed, action.command_id, FailReason.UNDECODABLE
            )
            return
        command_id = action.command_id
        async with self._lock:
            try:
                actions = await self._in_worker(
                    self.core.on_prepared,
                    command_id,
                    duration_ms=sound.duration_ms,
                    level_dbfs=sound.level_dbfs,
                )
            except Exception:
                log.exception("스피커 처리 실패 / the speaker core failed (on_prepared)")
                return
            if self.core.playing == command_id or command_id in self.core.queued:
                self._sounds[command_id] = sound  # else it was cancelled or expired meanwhile
            self._carry_out(actions)

    async def _play(self, command_id: str) -> None:
        # Kept until the command ends: a pre-empted command plays again from the start.
        sound = self._sounds.get(command_id)
        try:
            if sound is None:
                raise PlayerError("no prepared sound")
            # A hung player must not keep the horn from every later message.
            async with asyncio.timeout(sound.duration_ms / 1000 * 1.5 + PLAYER_SLACK_S):
                played_ms = await self._player.play(sound.pcm)
        except (PlayerError, TimeoutError, OSError) as exc:
            log.error("command %s: the player failed: %r", command_id, exc)
            self._plays.pop(command_id, None)
            await self._drive(self.core.on_play_failed, command_id, FailReason.PLAYER_ERROR)
            return
        self._plays.pop(command_id, None)
        await self._drive(self.core.on_play_finished, command_id, played_ms=played_ms)


async def serve(config: AgentConfig, stop: asyncio.Event, *, player: Player | None = None) -> None:
    """Open the journal, the hub and the HTTP client, run the agent until `stop`, close them."""
    key_file = config.speaker.receipt_key_file
    receipt_key = await asyncio.to_thread(load_receipt_key, key_file) if key_file else None
    journal = await asyncio.to_thread(SqliteJournal, config.journal.path)
    hub = Hub(connect_concurrency=1)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
            agent = Agent(
                config,
                journal=journal,
                hub=hub,
                http=http,
                player=player,
                receipt_key=receipt_key,
            )
            await agent.run(stop)
    finally:
        await hub.close()
        journal.close()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devices.agent",
        description="마을 방송 스피커 에이전트 / Maeul speaker agent",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--example-config", action="store_true", help="print an example and exit")
    parser.add_argument("--log-level", default=os.environ.get("MAEUL_AGENT_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--receipt-public-key",
        action="store_true",
        help="print the receipt key's enrollment (public half and proof of possession, JSON; "
        "the key is made if missing) and exit",
    )
    args = parser.parse_args(argv)
    if args.example_config:
        sys.stdout.write(example_config())
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        if args.receipt_public_key:
            return _print_receipt_public_key(config)
    except ConfigError as exc:
        sys.stderr.write(f"설정 오류 / configuration error: {exc}\n")
        return 2
    return asyncio.run(_serve(config))


def _print_receipt_public_key(config: AgentConfig) -> int:
    path = config.speaker.receipt_key_file
    if path is None:
        raise ConfigError("speaker.receipt_key_file is not set")
    identity = config.identity
    enrollment = contract.receipt_key_enrollment(
        load_receipt_key(path), identity.city, identity.speaker
    )
    # The body of PUT /api/v1/speakers/{id}/receipt-key: the public half and the proof that
    # this speaker holds the private half.
    sys.stdout.write(json.dumps(enrollment) + "\n")
    return 0


async def _serve(config: AgentConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
