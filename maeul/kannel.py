"""The local Kannel that `maeul run` and the tests start: its kannel.conf, its three processes
(bearerbox, smsbox, and the package's fake SMSC), readiness, supervision, and what reached the
fake SMSC.

Kannel's `smsc = fake` connection is a listening socket inside bearerbox; `fakesmsc` (a test
tool in Debian's kannel-extras) connects to it and logs every message bearerbox hands it, one
line each: ``Got message N: <sender receiver ucs-2 %XX..>``, or ``udh %XX.. data %XX..`` for a
part of a concatenated message. `FakeSmsc` reads that log back.

Delivery reports: fakesmsc itself sends none. Bearerbox's fake connection reports an SMSC
acknowledgement (DLR 8, ``ACK/``) once fakesmsc took a message, then a final "delivered"
(DLR 1) straight away, each to the message's dlr-url. A concatenated message gets one report
of each, not one per part. No failure report (DLR 2 or 16) ever comes from the fake SMSC.

Production does not start any of this: the gateway calls the operator-facing Kannel it is
configured with (`gateway.settings`, ``GATEWAY_SMS_*``).

Exceptions::

    KannelError     Kannel could not be found, started or stopped (message ends with its logs)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from maeul.broker import backoff_delay
from maeul.broker_config import find_free_port

log = logging.getLogger(__name__)

SBIN: Final = Path("/usr/sbin")
# Debian's kannel-extras keeps its test tools outside PATH.
FAKESMSC_DIRS: Final = (Path("/usr/lib/kannel/test"), Path("/usr/local/lib/kannel/test"))
READY_TIMEOUT_S: Final = 15.0
STOP_GRACE_S: Final = 5.0
SENDSMS_USER: Final = "maeul"
# The most parts one message may travel in; the gateway refuses longer texts before sending.
MAX_PARTS: Final = 10


class KannelError(Exception):
    """The local Kannel could not be found, started or stopped."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in (SBIN, *FAKESMSC_DIRS):
        candidate = directory / name
        if candidate.is_file():
            return str(candidate)
    return None


def find_kannel() -> tuple[str, str, str] | None:
    """(bearerbox, smsbox, fakesmsc) when all three are installed, else None."""
    found = tuple(_binary(name) for name in ("bearerbox", "smsbox", "fakesmsc"))
    if any(path is None for path in found):
        return None
    return found  # type: ignore[return-value]


@dataclass(frozen=True)
class KannelConfig:
    """One local Kannel: where it keeps its files, its four ports and its two passwords."""

    data_dir: Path
    host: str = "127.0.0.1"
    admin_port: int = field(default_factory=find_free_port)
    smsbox_port: int = field(default_factory=find_free_port)
    smsc_port: int = field(default_factory=find_free_port)
    sendsms_port: int = field(default_factory=find_free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sendsms_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    max_parts: int = MAX_PARTS

    @property
    def config_path(self) -> Path:
        return self.data_dir / "kannel.conf"

    @property
    def fakesmsc_log(self) -> Path:
        return self.data_dir / "fakesmsc.log"

    @property
    def sendsms_url(self) -> str:
        return f"http://{self.host}:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def status_url(self) -> str:
        password = urllib.parse.quote(self.admin_password)
        return f"http://{self.host}:{self.admin_port}/status.txt?password={password}"


def render_config(cfg: KannelConfig) -> str:
    """kannel.conf: bearerbox, a fake SMSC connection, smsbox and the gateway's sendsms user."""
    logs = cfg.data_dir.resolve()
    return f"""\
group = core
admin-port = {cfg.admin_port}
admin-interface = {cfg.host}
admin-password = {cfg.admin_password}
admin-allow-ip = {cfg.host}
smsbox-port = {cfg.smsbox_port}
smsbox-interface = {cfg.host}
box-allow-ip = {cfg.host}
dlr-storage = internal
log-file = "{logs / "bearerbox.log"}"
log-level = 1

group = smsc
smsc = fake
smsc-id = fake
port = {cfg.smsc_port}
our-host = {cfg.host}
connect-allow-ip = {cfg.host}

group = smsbox
bearerbox-host = {cfg.host}
bearerbox-port = {cfg.smsbox_port}
sendsms-port = {cfg.sendsms_port}
sendsms-interface = {cfg.host}
log-file = "{logs / "smsbox.log"}"
log-level = 1

group = sendsms-user
username = {SENDSMS_USER}
password = {cfg.sendsms_password}
concatenation = true
max-messages = {cfg.max_parts}
"""


# --- what reached the fake SMSC ---------------------------------------------------------------

_GOT: Final = re.compile(r"Got message (\d+): <(.*)>\s*$")


@dataclass(frozen=True)
class SmscPart:
    """One message (or one part of a concatenated one) as the fake SMSC received it."""

    sender: str
    receiver: str
    coding: str  # "text", "data", "ucs-2" or "udh" (a concatenated part, UCS-2 or 8-bit)
    data: bytes
    udh: bytes = b""

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(reference, total, number) from the concatenation header, if any."""
        udh = self.udh
        if len(udh) >= 6 and udh[1] == 0x00 and udh[2] == 3:
            return udh[3], udh[4], udh[5]
        if len(udh) >= 7 and udh[1] == 0x08 and udh[2] == 4:
            return (udh[3] << 8) | udh[4], udh[5], udh[6]
        return None

    def text(self) -> str:
        if self.coding == "text":
            return self.data.decode()
        if self.coding in ("ucs-2", "udh"):
            return self.data.decode("utf-16-be")
        return self.data.decode("latin-1")


def parse_fakesmsc_line(line: str) -> SmscPart | None:
    """The message in one line of fakesmsc's log, or None for any other line."""
    found = _GOT.search(line)
    if found is None:
        return None
    sender, receiver, kind, rest = [*found.group(2).split(" ", 3), "", "", ""][:4]
    if kind == "udh":
        udh, _, data = rest.partition(" data ")
        return SmscPart(
            sender,
            receiver,
            "udh",
            _unplus(data),
            _unplus(udh),
        )
    if kind == "text":
        return SmscPart(sender, receiver, kind, rest.encode())
    return SmscPart(sender, receiver, kind, _unplus(rest))


def _unplus(encoded: str) -> bytes:
    """Kannel's URL encoding writes a space as "+" (and a "+" as %2B)."""
    return urllib.parse.unquote_to_bytes(encoded.replace("+", " "))


class FakeSmsc:
    """Reads what reached the fake SMSC from fakesmsc's log."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path

    def parts(self) -> list[SmscPart]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [part for line in lines if (part := parse_fakesmsc_line(line)) is not None]

    async def wait_for(self, receiver: str, count: int = 1) -> list[str]:
        """The messages to `receiver` once `count` of them are in the log (the caller bounds
        the wait). Kannel reports a message delivered as it hands it to fakesmsc, a moment before
        fakesmsc writes its line, and the log is a file to poll, not an event to await."""
        while len(found := self.messages_to(receiver)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return found

    def messages_to(self, receiver: str) -> list[str]:
        """Every message to `receiver`, its concatenated parts joined in order."""
        single: list[str] = []
        groups: dict[int, dict[int, str]] = {}
        totals: dict[int, int] = {}
        for part in self.parts():
            if part.receiver != receiver:
                continue
            concat = part.concat
            if concat is None:
                single.append(part.text())
                continue
            reference, total, number = concat
            groups.setdefault(reference, {})[number] = part.text()
            totals[reference] = total
        joined = [
            "".join(parts[n] for n in sorted(parts))
            for reference, parts in groups.items()
            if len(parts) == totals[reference]
        ]
        return single + joined


# --- the processes ----------------------------------------------------------------------------


class KannelProcess:
    """A private Kannel (bearerbox, smsbox, fakesmsc); a context manager.

    `start()` returns once bearerbox reports the fake SMSC online and smsbox connected, so a
    sendsms request made afterwards is delivered.
    """

    def __init__(
        self,
        cfg: KannelConfig,
        *,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_grace: float = STOP_GRACE_S,
        own_session: bool = False,
    ) -> None:
        """`own_session`: run Kannel in a session of its own, so Ctrl-C in a terminal does not
        stop it before the gateway it serves (`maeul run`); a test run's Kannel stays in the
        caller's group, so an interrupted run takes it down."""
        found = find_kannel()
        if found is None:
            raise KannelError(
                "Kannel 실행 파일을 찾을 수 없습니다. kannel, kannel-extras 패키지를 설치하세요. "
                "/ bearerbox, smsbox or fakesmsc not found: install the kannel and "
                "kannel-extras packages"
            )
        self.bearerbox, self.smsbox, self.fakesmsc = found
        self.config = cfg
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._own_session = own_session
        self._procs: list[subprocess.Popen[bytes]] = []
        self._fake_stdin: IO[bytes] | None = None

    @property
    def sendsms_url(self) -> str:
        return self.config.sendsms_url

    def gateway_settings(self, sender: str = "1588") -> dict[str, str]:
        """The gateway settings (`gateway.settings.Settings` fields) that send through it."""
        return {
            "sms_sendsms_url": self.sendsms_url,
            "sms_username": SENDSMS_USER,
            "sms_password": self.config.sendsms_password,
            "sms_sender": sender,
        }

    @property
    def smsc(self) -> FakeSmsc:
        return FakeSmsc(self.config.fakesmsc_log)

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def _spawn(self, command: list[str], output: Path) -> subprocess.Popen[bytes]:
        with output.open("ab") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if "fakesmsc" in command[0] else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.config.data_dir,
                start_new_session=self._own_session,
            )
        self._procs.append(proc)
        return proc

    def start(self) -> None:
        if self.running:
            return
        self.stop()
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.config_path.write_text(render_config(cfg))
        cfg.config_path.chmod(0o600)
        conf = str(cfg.config_path.resolve())
        console = cfg.data_dir / "kannel-console.log"
        self._spawn([self.bearerbox, "-v", "1", conf], console)
        self._wait_for(lambda status: "Status: running" in status, "bearerbox")
        # No message arguments and an open standard input: fakesmsc only receives.
        fake = self._spawn(
            [self.fakesmsc, "-H", cfg.host, "-r", str(cfg.smsc_port), "-m", "0"],
            cfg.fakesmsc_log,
        )
        self._fake_stdin = fake.stdin
        self._spawn([self.smsbox, "-v", "1", conf], console)
        self._wait_for(_ready, "smsbox and the fake SMSC")
        log.info("로컬 Kannel 시작 / local Kannel started: sendsms on %s", cfg.sendsms_url)

    def status(self) -> str:
        """bearerbox's status page, or "" when it does not answer."""
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(self.config.status_url, timeout=1.0) as response,
        ):
            return str(response.read().decode(errors="replace"))
        return ""

    def _wait_for(self, ready: Callable[[str], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self._procs):
                self.stop()
                raise KannelError(f"Kannel exited while starting {what}; its log:\n{self._tail()}")
            if ready(self.status()):
                return
            time.sleep(0.05)
        self.stop()
        raise KannelError(f"Kannel: {what} not ready in {self.ready_timeout:g} s:\n{self._tail()}")

    def _tail(self, lines: int = 20) -> str:
        out: list[str] = []
        for name in ("kannel-console.log", "fakesmsc.log"):
            with contextlib.suppress(OSError):
                out += (self.config.data_dir / name).read_text(errors="replace").splitlines()
        return "\n".join(out[-lines:]) or "(no output)"

    def stop(self) -> None:
        """Stop smsbox, fakesmsc and bearerbox, newest first, each within the grace period."""
        if self._fake_stdin is not None:
            with contextlib.suppress(OSError):
                self._fake_stdin.close()
            self._fake_stdin = None
        procs, self._procs = self._procs, []
        for proc in reversed(procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()

    async def supervise(self, stop_event: asyncio.Event) -> None:
        """Start Kannel again, with jittered back-off, whenever one of its processes exits."""
        failures = 0
        while not stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), 1.0)
            if stop_event.is_set() or self.running:
                continue
            delay = backoff_delay(failures)
            failures += 1
            log.warning(
                "로컬 Kannel 이 종료되어 %.1f초 후 다시 시작합니다 / local Kannel exited; "
                "restarting in %.1f s",
                delay, delay,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), delay)
            if stop_event.is_set():
                return
            try:
                await asyncio.to_thread(self.start)
            except KannelError as exc:
                log.error("로컬 Kannel 을 다시 시작하지 못했습니다 / restart failed: %s", exc)
            else:
                failures = 0

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


def _ready(status: str) -> bool:
    """bearerbox's status says the fake SMSC is online and an smsbox is connected."""
    smsc_online = re.search(r"fake\[fake\].*\(online", status) is not None
    smsbox_on = re.search(r"smsbox:\S*, IP", status) is not None
    return smsc_online and smsbox_on
