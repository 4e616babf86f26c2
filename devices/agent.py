"""The agent of a real speaker (a Linux box beside the horn amplifier): the speaker core driven
by its link, journal, fetcher and player; and the command line.

Run it as ``python -m devices.agent --config speaker.toml``. It keeps one MQTT link up on its own
(`devices.link`), decides with `SpeakerCore`, and plays through the sound card by piping 16-bit
mono PCM into a player command (``aplay`` by default, `devices.player`): a recording whole, a
live broadcast as a stream (its chime, then the talk through the jitter buffer the simulated
speakers use, `devices.live_driver`, decoded and concealed by `devices.live_output`). Every state
change is written to a SQLite journal (`devices.journal`; WAL, synchronous=FULL: fsync before the
call returns) before it is acknowledged, and a command's PUBACK goes back to the broker only once
it is journaled, so neither a crash nor a power cut makes it play twice or vanish unanswered: what
was playing is reported ``failed``/``interrupted`` after the restart, what was waiting
(pre-empted ones included) is queued again.

Under systemd (``maeul-speaker.service``, installed by ``maeul speaker enroll``) it says when it
is ready, pings the watchdog while its event loop and journal answer, and shows whether the
broker link is up in its status line (`devices.sdnotify`).

Configuration: a TOML file (see `example_config`), then environment variables named
``MAEUL_AGENT_<SECTION>_<KEY>`` (``MAEUL_AGENT_BROKER_PASSWORD``, ``MAEUL_AGENT_GATEWAY_TOKEN``,
...), which win (`devices.agent_config`).

Exceptions::

    ConfigError     the configuration file or environment is not usable (`devices.agent_config`)
    PlayerError     the player command failed, stopped early or stopped reading (the command
                    is acked failed/player_error; `devices.player`)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from pydantic import SecretStr

from devices import sdnotify
from devices.actions import FINAL, Ack, Action, Play, Prepare, Stop
from devices.agent_config import (
    AgentConfig,
    ConfigError,
    example_config,
    load_config,
    load_receipt_key,
)
from devices.hub import Hub
from devices.journal import SqliteJournal
from devices.keyring import KeyLearner, http_keyring
from devices.lead import OutputLead
from devices.link import Incoming, Link
from devices.live import Finished
from devices.live_driver import LiveDriver, settle
from devices.live_output import LiveOutput
from devices.player import CommandPlayer, Player, PlayerError
from devices.receiver_settings import (
    REFRESH_S,
    RETRY_S,
    SettingsUnavailable,
    fetch_receiver_settings,
)
from devices.sound import Fetcher, Sound, SoundError, decode_sound
from devices.speaker import SpeakerCore
from devices.volume import scale_pcm
from wire import contract
from wire.contract import FailReason

log = logging.getLogger(__name__)

TICK_S: Final = 5.0
PLAYER_SLACK_S: Final = 10.0
PRUNE_EVERY_S: Final = 6 * 3600.0
# Journal entries are kept this long after their command expired: a replay of an expired
# command is refused on its expiry anyway, the margin covers a clock that jumps back.
KEEP_AFTER_EXPIRY_MS: Final = 7 * 24 * 3600 * 1000

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
            live=True,
            clock_offset=lambda: self.core.clock_offset.offset_ms,
        )
        # How far ahead the player is fed during a live talk, learned over the streams.
        self.lead = OutputLead(config.player.live_lead_ms)
        self.streams = LiveDriver(
            on_end=self._stream_ended,
            keep_payloads=True,
            offset_ms=lambda: self.core.clock_offset.offset_ms,
            output_lead_ms=lambda: self.lead.heard_after_ms(),
        )
        self._stream_ends: dict[str, asyncio.Future[Finished]] = {}
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
        self._link_state: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Settle what the journal left unfinished, then serve until `stop` is set."""
        try:
            await self._in_worker(self.journal.prune, self._clock() - KEEP_AFTER_EXPIRY_MS)
            await self._drive(self.core.recover)
            self.link.start()
            self._spawn(self._consume(), "agent-inbox")
            self._spawn(self._tick(), "agent-tick")
            if self.config.speaker.kind == "household_receiver":
                self._spawn(self._follow_household(), "agent-household")
            self.ready.set()
            log.info("스피커 %s 에이전트 시작 / agent started", self.identity.speaker)
            sdnotify.notify(f"READY=1\nSTATUS=speaker {self.identity.speaker} serving")
            every = sdnotify.watchdog_interval_s()
            if every is not None:
                self._spawn(self._watchdog(every), "agent-watchdog")
            await stop.wait()
        finally:
            sdnotify.notify("STOPPING=1")
            for task in [*self._tasks, *self._plays.values()]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._plays.values(), return_exceptions=True)
            self.streams.halt()
            await self.link.close()
            self._worker.shutdown(wait=True)
            log.info("스피커 %s 에이전트 종료 / agent stopped", self.identity.speaker)

    def _on_message(self, incoming: Incoming) -> None:
        if contract.is_live_topic(incoming.topic):
            # Frames are not journaled: a moment later they are stale, so they play now or never.
            self.link.acknowledge(incoming)
            self.streams.frame(incoming.payload)
            return
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

    async def _watchdog(self, every_s: float) -> None:
        """Tell systemd the agent is alive while its event loop turns and its journal thread
        answers; if either hangs, the pings stop and systemd restarts the agent."""
        while True:
            await self._in_worker(lambda: None)
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(every_s)

    async def _tick(self) -> None:
        since_prune = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            await self._drive(self.core.on_tick)
            self._report_link()
            since_prune += TICK_S
            if since_prune >= PRUNE_EVERY_S:
                since_prune = 0.0
                await self._in_worker(self.journal.prune, self._clock() - KEEP_AFTER_EXPIRY_MS)

    async def _follow_household(self) -> None:
        """An indoor receiver: its household's volume and quiet-hours hold, from its provisioning
        document now and every hour. Until the first answer it plays every notice at once, at
        its own volume: never silent for want of the gateway."""
        gateway, password = self.config.gateway.url, self.config.broker.password
        if gateway is None or password is None:
            log.warning("수신기 설정을 받을 수 없음 / no gateway url or broker password to ask")
            return
        while True:
            try:
                settings = await fetch_receiver_settings(
                    self._http, gateway, self.identity.speaker, password.get_secret_value()
                )
            except SettingsUnavailable as exc:
                log.warning("수신기 설정을 받지 못함 / receiver settings not fetched: %s", exc)
                await asyncio.sleep(RETRY_S)
                continue
            async with self._lock:
                self.core.receiver = settings
            await asyncio.sleep(REFRESH_S)

    def _report_link(self) -> None:
        """Log the broker link's state when it changes, and show it in systemd's status line."""
        link = self.link
        state = "connected" if link.online else f"not connected: {link.last_error or 'connecting'}"
        if state == self._link_state:
            return
        self._link_state = state
        if link.online:
            log.info("브로커 연결됨 / connected to the broker")
        else:
            log.warning("브로커에 연결되지 않음 / %s", state)
        sdnotify.notify(f"STATUS=speaker {self.identity.speaker}: {state}")

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Ack):
                message = self.streams.ack(action.message)
                if message.status in FINAL:
                    self._sounds.pop(message.command_id, None)
                self.link.publish_ack(message)
            elif isinstance(action, Prepare):
                self._spawn(self._prepare(action), f"prepare-{action.command_id[:8]}")
            elif isinstance(action, Play):
                command = action.command
                self.streams.started(command)
                # Neighbouring horns start together: at the command's play-at time.
                wait = self.core.clock_offset.wait_ms(command.play_at_ms, self.core.now_ms())
                play = (
                    self._play(command.id, wait, action.volume)
                    if command.live is None
                    else self._stream(command, wait)
                )
                self._plays[command.id] = self._spawn(play, "play")
            elif isinstance(action, Stop):
                # Cancelled or pre-empted alike, the sound stops now (cancelling the task
                # stops the player). A pre-empted command keeps its decoded sound: it plays
                # again from the start.
                task = self._plays.pop(action.command_id, None)
                if task is not None:
                    task.cancel()
                self.streams.stop(action.command_id)
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

    async def _play(
        self, command_id: str, wait_ms: float = 0.0, volume: int = contract.FULL_VOLUME
    ) -> None:
        await asyncio.sleep(wait_ms / 1000)
        # Kept until the command ends: a pre-empted command plays again from the start.
        sound = self._sounds.get(command_id)
        try:
            if sound is None:
                raise PlayerError("no prepared sound")
            pcm = sound.pcm
            if volume < contract.FULL_VOLUME:
                # An indoor receiver's household volume; the core reports the scaled level.
                samples = await asyncio.to_thread(scale_pcm, pcm.samples, volume)
                pcm = dataclasses.replace(pcm, samples=samples)
            # A hung player must not keep the horn from every later message.
            async with asyncio.timeout(sound.duration_ms / 1000 * 1.5 + PLAYER_SLACK_S):
                played_ms = await self._player.play(pcm)
        except (PlayerError, TimeoutError, OSError) as exc:
            log.error("command %s: the player failed: %r", command_id, exc)
            self._plays.pop(command_id, None)
            await self._drive(self.core.on_play_failed, command_id, FailReason.PLAYER_ERROR)
            return
        self._plays.pop(command_id, None)
        await self._drive(self.core.on_play_finished, command_id, played_ms=played_ms)

    async def _stream(self, command: contract.Command, wait_ms: float = 0.0) -> None:
        """A live command: its chime, then its stream, into one run of the player."""
        await asyncio.sleep(wait_ms / 1000)
        command_id = command.id
        chime = self._sounds.get(command_id)
        ended: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        self._stream_ends[command_id] = ended
        try:
            if chime is None:
                raise PlayerError("no prepared chime")
            output = LiveOutput(
                await self._player.open(), rate=self.config.player.sample_rate, lead=self.lead
            )
            end = await output.play(chime.pcm, self.streams, command, ended)
        except (PlayerError, OSError) as exc:
            log.error("command %s: the player failed: %r", command_id, exc)
            self.streams.stop(command_id)
            self._plays.pop(command_id, None)
            await self._drive(self.core.on_play_failed, command_id, FailReason.PLAYER_ERROR)
            return
        finally:
            self._stream_ends.pop(command_id, None)
        self._plays.pop(command_id, None)
        await self._drive(settle, self.core, end)

    def _stream_ended(self, end: Finished) -> None:
        ended = self._stream_ends.get(end.command_id)
        if ended is not None and not ended.done():
            ended.set_result(end)


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
