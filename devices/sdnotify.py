"""Telling systemd how the agent is: ``READY=1`` once it serves, ``WATCHDOG=1`` while it is
alive, ``STOPPING=1`` on the way out (``sd_notify(3)``: one datagram to ``$NOTIFY_SOCKET``).

Without ``$NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (``KEY=value`` lines) to systemd; True when there was a socket to send to."""
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd 알림 실패 / cannot notify systemd (%s): %s", state.split("\n")[0], exc)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``: half of systemd's ``WatchdogSec``, or None when no
    watchdog watches this process."""
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None
