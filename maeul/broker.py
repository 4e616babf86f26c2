"""The local Mosquitto that `maeul run` and the tests start, probe, supervise and stop.

One lifecycle (start, wait until ready, retry on another port, stop, kill) is written once, as
generators of steps that do no I/O: spawn the process, probe it, wait for it to exit. Two front
ends perform the steps: `LocalMosquitto` with asyncio, plus a supervisor that restarts the
broker when it dies, and `MosquittoProcess` synchronously, for code such as pytest fixtures.
Users are either in the dynamic security plugin's file (`MosquittoConfig.dynsec_file`), changed
at run time by the gateway, or in a password file and ACL, which `reload()` (SIGHUP) reads again
without disconnecting anyone.

Readiness means the broker answered an MQTT 5 CONNECT with a CONNACK (`maeul.mqtt_probe`), not
merely that its port accepts TCP.

Exceptions::

    BrokerError     the broker could not be found, started or stopped (message ends with its log;
                    defined in `maeul.broker_config`)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeAlias, TypeVar

from maeul.broker_config import (
    BrokerError,
    MosquittoConfig,
    find_free_port,
    find_mosquitto,
    raise_nofile_limit,
    render_config,
)
from maeul.mqtt_probe import probe, probe_async

log = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 10.0
STOP_GRACE_S: Final = 5.0
# A broker that stayed up this long before dying starts the back-off again from the bottom.
STABLE_AFTER_S: Final = 30.0
_ADDRESS_IN_USE: Final = "Address already in use"
_START_ATTEMPTS: Final = 3


def backoff_delay(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential back-off with jitter, so brokers restarted together do not retry together."""
    ceiling = min(cap, base * 2 ** min(failures, 32))
    return random.uniform(ceiling / 2, ceiling)


# --- the lifecycle, as steps a front end performs ---------------------------------------------

P = TypeVar("P", subprocess.Popen[bytes], asyncio.subprocess.Process)
T = TypeVar("T")


@dataclass(frozen=True)
class _Spawn:
    """Start the broker with this command line; the reply is its process."""

    command: list[str]


@dataclass(frozen=True)
class _Probe:
    """Send the broker a CONNECT; the reply is whether a CONNACK came back within a second."""


@dataclass(frozen=True)
class _WaitExit(Generic[P]):
    """Wait for the process to exit, at most `timeout` seconds (None: however long it takes);
    the reply is whether it exited."""

    proc: P
    timeout: float | None


_Step: TypeAlias = _Spawn | _Probe | _WaitExit[P]
# A generator of steps: each step's reply is sent back in; its return value is the result.
_Steps: TypeAlias = Generator[_Step[P], Any, T]


class _Broker(Generic[P]):
    """What both front ends share: the configuration, the lifecycle's steps, the log tail."""

    def __init__(
        self,
        cfg: MosquittoConfig,
        *,
        binary: str | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_grace: float = STOP_GRACE_S,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise BrokerError(
                "mosquitto 실행 파일을 찾을 수 없습니다. mosquitto 패키지를 설치하세요. "
                "/ no mosquitto binary on PATH or in /usr/sbin: install the mosquitto package"
            )
        self.binary = found
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._port_fixed = cfg.port is not None
        self.config = dataclasses.replace(cfg, port=cfg.port or find_free_port(cfg.host))
        self._started_once = False
        self._marks: dict[Path, int] = {}
        self._proc: P | None = None

    @staticmethod
    def _returncode(proc: P) -> int | None:
        """The exit status once the process has exited; None while it runs."""
        raise NotImplementedError

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        assert self.config.port is not None
        return self.config.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._returncode(self._proc) is None

    def reload(self) -> bool:
        """SIGHUP: the broker reads its password file and ACL again; nobody is disconnected.

        False when no broker is running (the next start reads the files anyway).
        """
        proc = self._proc
        if proc is None or self._returncode(proc) is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGHUP)
            return True
        return False

    def _starting(self) -> _Steps[P, None]:
        for _ in range(_START_ATTEMPTS):
            if (yield from self._spawn_and_wait()):
                return
        raise self._exited(-1)

    def _spawn_and_wait(self) -> _Steps[P, bool]:
        """Start one broker process and wait for its CONNACK; False to try on another port."""
        proc: P = yield _Spawn(self._prepare())
        self._proc = proc
        raise_nofile_limit(proc.pid)
        log.info("로컬 MQTT 브로커 시작 / mosquitto started: pid %s, %s", proc.pid, self.url)
        try:
            ready = yield from self._wait_ready(proc)
        except BaseException:
            # Timed out, or interrupted while starting (Ctrl-C): a half-started broker must not
            # linger. Interrupted again while it is reaped, `stop()` reaps it.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            yield _WaitExit(proc, None)
            self._proc = None
            raise
        if ready:
            self._started_once = True
            return True
        self._proc = None
        if self._retry_on_new_port():
            return False
        raise self._exited(self._returncode(proc) or 0)

    def _wait_ready(self, proc: P) -> _Steps[P, bool]:
        """True once the broker answers a CONNECT; False if it exited first."""
        deadline = time.monotonic() + self.ready_timeout
        while self._returncode(proc) is None:
            if (yield _Probe()):
                return True
            if time.monotonic() > deadline:
                raise self._not_ready()
            yield _WaitExit(proc, 0.05)
        return False

    def _terminating(self, proc: P) -> _Steps[P, None]:
        if self._returncode(proc) is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            if not (yield _WaitExit(proc, self.stop_grace)):
                log.warning("브로커가 SIGTERM 에 응답하지 않아 강제 종료합니다 / SIGKILL mosquitto")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                yield _WaitExit(proc, None)

    def _killing(self) -> _Steps[P, None]:
        proc = self._proc
        if proc is not None and self._returncode(proc) is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            yield _WaitExit(proc, None)

    def _prepare(self) -> list[str]:
        """Write the configuration and remember where the logs end, so errors quote this run."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config.config_path.write_text(render_config(self.config))
        self._marks = {
            path: path.stat().st_size if path.exists() else 0
            for path in (self.config.log_path, self.config.console_path)
        }
        return [self.binary, "-c", str(self.config.config_path.resolve())]

    def _tail(self, lines: int = 20) -> str:
        out: list[str] = []
        for path, start in self._marks.items():
            with contextlib.suppress(OSError), path.open("rb") as handle:
                handle.seek(start)
                out += handle.read().decode(errors="replace").splitlines()
        return "\n".join(out[-lines:]) or "(no output)"

    def _retry_on_new_port(self) -> bool:
        """After a lost race for an automatically chosen port, choose another one."""
        if self._port_fixed or self._started_once or _ADDRESS_IN_USE not in self._tail():
            return False
        self.config = dataclasses.replace(self.config, port=find_free_port(self.host))
        return True

    def _exited(self, returncode: int) -> BrokerError:
        return BrokerError(
            f"로컬 MQTT 브로커가 시작 중에 종료되었습니다 / mosquitto exited with {returncode} "
            f"while starting on {self.host}:{self.port}; its log:\n{self._tail()}"
        )

    def _not_ready(self) -> BrokerError:
        return BrokerError(
            f"로컬 MQTT 브로커가 {self.ready_timeout:g}초 안에 응답하지 않았습니다 / mosquitto did "
            f"not answer an MQTT CONNECT on {self.host}:{self.port}; its log:\n{self._tail()}"
        )

    def _console(self) -> int:
        return os.open(self.config.console_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


# --- asyncio ----------------------------------------------------------------------------------


class LocalMosquitto(_Broker[asyncio.subprocess.Process]):
    """A private Mosquitto for asyncio code: start, stop, restart and supervise."""

    def __init__(
        self,
        cfg: MosquittoConfig,
        *,
        binary: str | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_grace: float = STOP_GRACE_S,
    ) -> None:
        super().__init__(cfg, binary=binary, ready_timeout=ready_timeout, stop_grace=stop_grace)
        self._wanted = False  # start() called and stop() not since: an exit is a crash
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @staticmethod
    def _returncode(proc: asyncio.subprocess.Process) -> int | None:
        return proc.returncode

    async def _run(self, steps: _Steps[asyncio.subprocess.Process, T]) -> T:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply, error = await self._perform(step), None
            except BaseException as exc:
                reply, error = None, exc

    async def _perform(self, step: _Step[asyncio.subprocess.Process]) -> Any:
        match step:
            case _Spawn(command):
                console = self._console()
                try:
                    # A session of its own: Ctrl-C in the terminal must not kill the broker
                    # before the gateway and the speakers it serves have shut down in order.
                    return await asyncio.create_subprocess_exec(
                        *command,
                        stdin=subprocess.DEVNULL,
                        stdout=console,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                finally:
                    os.close(console)
            case _Probe():
                with contextlib.suppress(OSError, TimeoutError, BrokerError):
                    async with asyncio.timeout(1.0):
                        await probe_async(self.host, self.port)
                    return True
                return False
            case _WaitExit(proc, timeout):
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                except TimeoutError:
                    return False
                return True

    async def start(self) -> None:
        async with self._lock:
            self._wanted = True
            if self.running:
                return
            try:
                await self._run(self._starting())
            finally:
                self._changed.set()

    async def stop(self) -> None:
        async with self._lock:
            self._wanted = False
            proc, self._proc = self._proc, None
            try:
                if proc is not None:
                    await self._run(self._terminating(proc))
                    log.info("로컬 MQTT 브로커를 정지했습니다 / mosquitto stopped")
            finally:
                self._changed.set()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def kill(self) -> None:
        """SIGKILL the broker as a crash would: the supervisor, if any, brings it back."""
        await self._run(self._killing())

    async def supervise(self, stop_event: asyncio.Event) -> None:
        """Restart the broker with jittered exponential back-off whenever it exits on its own.

        Returns when stop_event is set, leaving the broker as it is; `stop()` stops it. An exit
        caused by `stop()` or `restart()` is not a crash and is left alone.
        """
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop_event.wait())
        failures = 0
        try:
            while not stopping.done():
                self._changed.clear()
                proc = self._proc
                if proc is not None and proc.returncode is None:
                    up_since = loop.time()
                    exited = asyncio.ensure_future(proc.wait())
                    await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
                    exited.cancel()
                    if stopping.done():
                        return
                    if loop.time() - up_since >= STABLE_AFTER_S:
                        failures = 0
                if not self._wanted or self._proc is not proc or self._lock.locked():
                    # Stopped or being replaced on purpose: wait for the next start or stop.
                    changed = asyncio.ensure_future(self._changed.wait())
                    await asyncio.wait({stopping, changed}, return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                    continue
                delay = backoff_delay(failures)
                failures += 1
                code = proc.returncode if proc is not None else None
                log.warning(
                    "로컬 MQTT 브로커가 종료되어 다시 시작합니다 (종료 코드 %s, %.1f초 후) "
                    "/ local MQTT broker exited (code %s); restarting in %.1f s",
                    code, delay, code, delay,
                )  # fmt: skip
                await asyncio.wait({stopping}, timeout=delay)
                if stopping.done() or not self._wanted or self._proc is not proc:
                    continue
                self._proc = None
                try:
                    await self.start()
                except BrokerError as exc:
                    log.error(
                        "로컬 MQTT 브로커를 다시 시작하지 못했습니다 / restart failed: %s", exc
                    )
                else:
                    log.warning(
                        "로컬 MQTT 브로커를 다시 시작했습니다 / broker is back: %s", self.url
                    )
        finally:
            stopping.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# --- synchronous ------------------------------------------------------------------------------


class MosquittoProcess(_Broker[subprocess.Popen[bytes]]):
    """A private Mosquitto for synchronous code (pytest fixtures); a context manager.

    Unlike `LocalMosquitto` it stays in the caller's process group, so Ctrl-C on a test run
    takes the broker down with it instead of leaving it behind.
    """

    @staticmethod
    def _returncode(proc: subprocess.Popen[bytes]) -> int | None:
        return proc.poll()

    def _run(self, steps: _Steps[subprocess.Popen[bytes], T]) -> T:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply, error = self._perform(step), None
            except BaseException as exc:
                reply, error = None, exc

    def _perform(self, step: _Step[subprocess.Popen[bytes]]) -> Any:
        match step:
            case _Spawn(command):
                console = self._console()
                try:
                    return subprocess.Popen(
                        command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
                    )
                finally:
                    os.close(console)
            case _Probe():
                with contextlib.suppress(OSError, BrokerError):
                    probe(self.host, self.port, timeout=1.0)
                    return True
                return False
            case _WaitExit(proc, timeout):
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    return False
                return True

    def start(self) -> None:
        if not self.running:
            self._run(self._starting())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._run(self._terminating(proc))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the broker as a crash would, and reap it; `start()` brings it back."""
        self._run(self._killing())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
