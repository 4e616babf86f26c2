"""What the local Mosquitto is and reads: finding its binary, its plugin and a free port; the
mosquitto.conf generated at every start; the password, ACL and dynamic security files.

Exceptions::

    BrokerError     the broker could not be found, started or stopped (message ends with its log)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import resource
import secrets
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# The password file's format belongs to the gateway, which renders it from its database.
from gateway.devicesec.mosquitto import hash_password as hash_password
from gateway.devicesec.mosquitto import render_passwd
from gateway.devicesec.mosquitto import verify_password as verify_password
from maeul.broker_bridge import Bridge, render_bridge

log = logging.getLogger(__name__)

# Debian installs the broker in /usr/sbin, which is not on an ordinary user's PATH.
FALLBACK_BINARY: Final = Path("/usr/sbin/mosquitto")


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
    # An edge broker: its bridge to the core broker (`maeul.broker_bridge`).
    bridge: Bridge | None = None

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
    if cfg.bridge is not None:
        lines += ["", *render_bridge(cfg.bridge)]
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
