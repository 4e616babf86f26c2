"""Private Mosquitto brokers for tests that need one of their own (TLS, restarts, many clients)."""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maeul.broker_config import find_mosquitto
from tests.support.net import reachable

MOSQUITTO = find_mosquitto()
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="no mosquitto binary")


def _raise_open_files() -> None:
    # Runs in the broker's process before exec: one descriptor per client.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def mosquitto(work: Path, port: int, extra: str = "") -> Iterator[None]:
    """Mosquitto on 127.0.0.1:`port` for the duration of the block (running as this user)."""
    assert MOSQUITTO is not None
    conf = work / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"user {pwd.getpwuid(os.getuid()).pw_name}\nlog_dest none\n{extra}"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL, preexec_fn=_raise_open_files
    )
    try:
        for _ in range(250):
            if reachable("127.0.0.1", port, timeout=0.1):
                break
            if proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.02)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
