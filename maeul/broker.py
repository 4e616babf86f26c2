"""The local Mosquitto that `maeul run` and the tests start, probe, supervise and stop.

Two front ends share one core (configuration, command line, readiness probe, log tail):
`LocalMosquitto` for asyncio code, with a supervisor that restarts the broker when it dies, and
`MosquittoProcess` for synchronous code such as pytest fixtures. Users are either in the
dynamic security plugin's file (`MosquittoConfig.dynsec_file`), changed at run time by the
gateway, or in a password file and ACL, which `reload()` (SIGHUP) reads again without
disconnecting anyone.

Readiness means the broker answered an MQTT 5 CONNECT with a CONNACK, not merely that its port
accepts TCP. Any CONNACK counts, a refusal included: it proves the broker is parsing MQTT.

Exceptions::

    BrokerError     the broker could not be found, started or stopped (message ends with its log)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pwd
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

# The password file's format belongs to the gateway, which renders it from its database.
from gateway.devicesec.mosquitto import hash_password as hash_password
from gateway.devicesec.mosquitto import render_passwd
from gateway.devicesec.mosquitto import verify_password as verify_password

log = logging.getLogger(__name__)

# Debian installs the broker in /usr/sbin, which is not on an ordinary user's PATH.
FALLBACK_BINARY: Final = Path("/usr/sbin/mosquitto")
READY_TIMEOUT_S: Final = 10.0
STOP_GRACE_S: Final = 5.0
# A broker that stayed up this long before dying starts the back-off again from the bottom.
STABLE_AFTER_S: Final = 30.0
_ADDRESS_IN_USE: Final = "Address already in use"


class BrokerError(Exception):
    """The local broker could not be found, started or stopped."""


# --- finding things ---------------------------------------------------------------------------


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(FALLBACK_BINARY, os.X_OK):
        return str(FALLBACK_BINARY)
    return None


DYNSEC_PLUGIN: Final = "mosquitto_dynamic_security.so"
_PLUGIN_DIRS: Final = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                       "/usr/local/lib", "/usr/lib64")  # fmt: skip


def find_dynsec_plugin() -> str | None:
    """The dynamic security plugin as Debian, Alpine or a source build installs it."""
    for directory in _PLUGIN_DIRS:
        candidate = Path(directory) / DYNSEC_PLUGIN
        if candidate.is_file():
            return str(candidate)
    return None


def find_free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def raise_nofile_limit(pid: int = 0) -> int:
    """Raise the open-file soft limit of a process (0: this one) to its hard limit.

    Every MQTT connection is a file descriptor, and the usual soft limit of 1024 is far below
    the 10,000 speakers a city has. Returns the soft limit in force afterwards.
    """
    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:  # not Linux: leave the limit alone
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        soft, hard = prlimit(pid, resource.RLIMIT_NOFILE)
    except ProcessLookupError:  # it exited already; the caller sees that when it waits
        return 0
    target = hard if hard != resource.RLIM_INFINITY else _kernel_nofile_max()
    if soft == resource.RLIM_INFINITY or soft >= target:
        return int(soft)
    try:
        prlimit(pid, resource.RLIMIT_NOFILE, (target, hard))
    except ProcessLookupError:
        return 0
    except (OSError, ValueError) as exc:
        log.warning("열린 파일 한도를 올리지 못했습니다 / could not raise RLIMIT_NOFILE: %s", exc)
        return int(soft)
    return int(target)


def _kernel_nofile_max() -> int:
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1_048_576


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MosquittoConfig:
    """What the generated mosquitto.conf says; every file the broker writes lives in data_dir."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port, chosen once and kept across restarts
    # Per-device credentials: allow_anonymous=False with the password file and ACL the gateway
    # renders (gateway.devicesec): each speaker reads and writes only its own topics.
    password_file: Path | None = None
    acl_file: Path | None = None
    # Or Mosquitto's dynamic security plugin with this file (`render_dynsec` in
    # gateway.devicesec.dynsec): each speaker bound to its own client id, users and roles
    # changed at run time by the gateway without a reload. The broker rewrites the file.
    dynsec_file: Path | None = None
    allow_anonymous: bool = True
    # One gateway client receives the acks of every speaker of the city through a shared
    # subscription, a burst of 10,000 x 4 QoS 1 messages per broadcast. Mosquitto silently
    # drops what exceeds a client's queue (default 1000), so the queue is sized for that burst
    # and bounded in bytes instead. In-flight is raised from 20 so the ack stream is not gated
    # by round trips, but kept finite so a slow consumer does not get it all in its socket.
    max_inflight_messages: int = 1000
    max_queued_messages: int = 100_000
    max_queued_bytes: int = 256 * 1024 * 1024
    # The database is the system of record and the outbox republishes what the broker lost, so
    # the local broker keeps nothing on disk by default.
    persistence: bool = False
    # 10,000 speakers reconnecting would flood the log with connect lines.
    connection_messages: bool = False
    # Run as root, Mosquitto switches to the "mosquitto" user, which cannot write to a data
    # directory we created. None keeps it as the user running this process.
    user: str | None = None

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def console_path(self) -> Path:
        """Where the broker's stdout and stderr go: errors from before its log file is open."""
        return self.data_dir / "mosquitto.console"


def _conf_value(value: object) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"a mosquitto.conf value cannot contain a line break: {text!r}")
    return text


def render_config(cfg: MosquittoConfig) -> str:
    """The mosquitto.conf for cfg; cfg.port must be set."""
    if cfg.port is None:
        raise ValueError("render_config needs a port; LocalMosquitto chooses one when it is None")
    data_dir = cfg.data_dir.resolve()
    user = cfg.user or pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        "# Generated by maeul.broker at every start; edits are overwritten.",
        "# MQTT 5 (and 3.1.1) is served by default since Mosquitto 2.0.",
        "per_listener_settings false",
        f"user {_conf_value(user)}",
        f"allow_anonymous {'true' if cfg.allow_anonymous else 'false'}",
    ]
    if cfg.password_file is not None:
        lines.append(f"password_file {_conf_value(cfg.password_file.resolve())}")
    if cfg.acl_file is not None:
        lines.append(f"acl_file {_conf_value(cfg.acl_file.resolve())}")
    if cfg.dynsec_file is not None:
        plugin = find_dynsec_plugin()
        if plugin is None:
            raise BrokerError(
                "Mosquitto 의 dynamic security 플러그인을 찾을 수 없습니다 / no "
                "mosquitto_dynamic_security.so next to the broker: install the mosquitto package"
            )
        lines += [
            f"plugin {_conf_value(plugin)}",
            f"plugin_opt_config_file {_conf_value(cfg.dynsec_file.resolve())}",
        ]
    lines += [
        f"max_inflight_messages {int(cfg.max_inflight_messages)}",
        f"max_queued_messages {int(cfg.max_queued_messages)}",
        f"max_queued_bytes {int(cfg.max_queued_bytes)}",
        "set_tcp_nodelay true",
        f"persistence {'true' if cfg.persistence else 'false'}",
    ]
    if cfg.persistence:
        lines.append(f"persistence_location {_conf_value(data_dir)}/")
    lines += [
        f"log_dest file {_conf_value(data_dir / cfg.log_path.name)}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        f"connection_messages {'true' if cfg.connection_messages else 'false'}",
        "",
        f"listener {int(cfg.port)} {_conf_value(cfg.host)}",
        "max_connections -1",
    ]
    return "\n".join(lines) + "\n"


def write_broker_file(path: Path, text: str) -> bool:
    """Write a password file, ACL or dynamic security file readable by its owner only,
    atomically, so a broker reloading at that moment reads the old file or the new one. False
    when it already said that."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return True


def render_password_file(users: Mapping[str, str]) -> str:
    """A password_file for Mosquitto from user name -> plain password (tests, one-off tools).

    The gateway renders the real one from its database (`gateway.devicesec`), hashes only.
    """
    return render_passwd({name: hash_password(password) for name, password in users.items()})


# --- the readiness probe (raw MQTT 5 CONNECT / CONNACK; the packet code does no I/O) ---------

DISCONNECT: Final = b"\xe0\x00"  # MQTT 5 DISCONNECT, reason "normal"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _mqtt_bytes(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def build_connect(
    client_id: str, *, username: str | None = None, password: str | None = None
) -> bytes:
    """An MQTT 5 CONNECT: clean start, 10 s keep-alive, no properties, no will."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _mqtt_bytes(b"MQTT") + bytes([5, flags]) + (10).to_bytes(2, "big") + b"\x00"
    body += _mqtt_bytes(client_id.encode())
    if username is not None:
        body += _mqtt_bytes(username.encode())
    if password is not None:
        body += _mqtt_bytes(password.encode())
    return b"\x10" + _varint(len(body)) + body


def connack_reason(data: bytes) -> int | None:
    """The reason code of the CONNACK at the start of data; None while more bytes are needed."""
    if not data:
        return None
    if data[0] != 0x20:
        raise BrokerError(f"expected a CONNACK, got packet type 0x{data[0]:02x}")
    length, index = 0, 1
    for shift in range(0, 28, 7):
        if index >= len(data):
            return None
        byte = data[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
    if length < 2:
        raise BrokerError("CONNACK too short")
    if len(data) < index + 2:
        return None
    return data[index + 1]


def _probe_id() -> str:
    return f"maeul-probe-{secrets.token_hex(4)}"


def probe(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    timeout: float = 1.0,
) -> int:
    """Connect over MQTT 5 and return the CONNACK reason code (0 accepted, 0x86/0x87 refused)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(build_connect(client_id or _probe_id(), username=username, password=password))
        data = b""
        while (code := connack_reason(data)) is None:
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError("the broker closed the connection before its CONNACK")
            data += chunk
        if code == 0:
            with contextlib.suppress(OSError):
                sock.sendall(DISCONNECT)
        return code


async def probe_async(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
) -> int:
    """`probe` for asyncio code; bound it with `asyncio.timeout`."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(build_connect(client_id or _probe_id(), username=username, password=password))
        data = b""
        while (code := connack_reason(data)) is None:
            chunk = await reader.read(256)
            if not chunk:
                raise ConnectionError("the broker closed the connection before its CONNACK")
            data += chunk
        if code == 0:
            writer.write(DISCONNECT)
            with contextlib.suppress(OSError):
                await writer.drain()
        return code
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def backoff_delay(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential back-off with jitter, so brokers restarted together do not retry together."""
    ceiling = min(cap, base * 2 ** min(failures, 32))
    return random.uniform(ceiling / 2, ceiling)


# --- the shared core of both front ends -------------------------------------------------------


class _Broker:
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

    def _spawned(self, pid: int) -> None:
        raise_nofile_limit(pid)
        log.info("로컬 MQTT 브로커 시작 / mosquitto started: pid %s, %s", pid, self.url)

    def _console(self) -> int:
        return os.open(self.config.console_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


_START_ATTEMPTS: Final = 3


class LocalMosquitto(_Broker):
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
        self._proc: asyncio.subprocess.Process | None = None
        self._wanted = False  # start() called and stop() not since: an exit is a crash
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        async with self._lock:
            self._wanted = True
            if self.running:
                return
            try:
                for _ in range(_START_ATTEMPTS):
                    if await self._spawn_and_wait():
                        break
                else:
                    raise self._exited(-1)
            finally:
                self._changed.set()

    async def _spawn_and_wait(self) -> bool:
        """Start one broker process and wait for its CONNACK; False to try on another port."""
        command = self._prepare()
        console = self._console()
        try:
            # A session of its own: Ctrl-C in the terminal must not kill the broker before the
            # gateway and the speakers it serves have shut down in order.
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(console)
        self._proc = proc
        self._spawned(proc.pid)
        try:
            ready = await self._wait_ready(proc)
        except BrokerError:
            proc.kill()
            await proc.wait()
            self._proc = None
            raise
        except BaseException:
            # Cancelled while starting (Ctrl-C): a half-started broker must not linger; stop()
            # reaps it.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if ready:
            self._started_once = True
            return True
        self._proc = None
        if self._retry_on_new_port():
            return False
        raise self._exited(proc.returncode or 0)

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> bool:
        """True once the broker answers a CONNECT; False if it exited first."""
        deadline = time.monotonic() + self.ready_timeout
        while proc.returncode is None:
            with contextlib.suppress(OSError, TimeoutError, BrokerError):
                async with asyncio.timeout(1.0):
                    await probe_async(self.host, self.port)
                return True
            if time.monotonic() > deadline:
                raise self._not_ready()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)
        return False

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.stop_grace)
            except TimeoutError:
                log.warning("브로커가 SIGTERM 에 응답하지 않아 강제 종료합니다 / SIGKILL mosquitto")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def stop(self) -> None:
        async with self._lock:
            self._wanted = False
            proc, self._proc = self._proc, None
            try:
                if proc is not None:
                    await self._terminate(proc)
                    log.info("로컬 MQTT 브로커를 정지했습니다 / mosquitto stopped")
            finally:
                self._changed.set()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def reload(self) -> bool:
        """SIGHUP: the broker reads its password file and ACL again; nobody is disconnected.

        False when no broker is running (the next start reads the files anyway).
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGHUP)
            return True
        return False

    async def kill(self) -> None:
        """SIGKILL the broker as a crash would: the supervisor, if any, brings it back."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

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


class MosquittoProcess(_Broker):
    """A private Mosquitto for synchronous code (pytest fixtures); a context manager.

    Unlike `LocalMosquitto` it stays in the caller's process group, so Ctrl-C on a test run
    takes the broker down with it instead of leaving it behind.
    """

    def __init__(
        self,
        cfg: MosquittoConfig,
        *,
        binary: str | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_grace: float = STOP_GRACE_S,
    ) -> None:
        super().__init__(cfg, binary=binary, ready_timeout=ready_timeout, stop_grace=stop_grace)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        for _ in range(_START_ATTEMPTS):
            if self._spawn_and_wait():
                return
        raise self._exited(-1)

    def _spawn_and_wait(self) -> bool:
        command = self._prepare()
        console = self._console()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(console)
        self._proc = proc
        self._spawned(proc.pid)
        try:
            ready = self._wait_ready(proc)
        except BaseException:
            # Timed out, or interrupted while starting: a half-started broker must not linger.
            proc.kill()
            proc.wait()
            self._proc = None
            raise
        if ready:
            self._started_once = True
            return True
        self._proc = None
        if self._retry_on_new_port():
            return False
        raise self._exited(proc.returncode)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once the broker answers a CONNECT; False if it exited first."""
        deadline = time.monotonic() + self.ready_timeout
        while proc.poll() is None:
            with contextlib.suppress(OSError, BrokerError):
                probe(self.host, self.port, timeout=1.0)
                return True
            if time.monotonic() > deadline:
                raise self._not_ready()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
        return False

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._terminate(proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> bool:
        """SIGHUP: the broker reads its password file and ACL again; nobody is disconnected."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGHUP)
        return True

    def kill(self) -> None:
        """SIGKILL the broker as a crash would, and reap it; `start()` brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

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
