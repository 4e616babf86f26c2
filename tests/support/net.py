"""Ports on this machine for the tests' own servers, and whether something answers on one."""

from __future__ import annotations

import socket

from maeul.broker_config import find_free_port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (another process may still take it)."""
    return find_free_port("127.0.0.1")


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection on `host`:`port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
