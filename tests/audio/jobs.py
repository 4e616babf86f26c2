"""Small picklable jobs the worker tests send to worker processes."""

from __future__ import annotations

import os
import resource
import time

from audio import errors


def pid() -> int:
    return os.getpid()


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def die() -> None:
    os._exit(3)


def address_space_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_AS)[0]


def allocate(size: int) -> int:
    return len(bytearray(size))


def raise_audio_error(name: str, detail: str) -> None:
    raise getattr(errors, name)(detail)


def wait_for_file(path: str, label: str, log: str) -> str:
    """Note `label` in `log` as started, then block until `path` exists: a job the test holds
    in its slot until it releases it."""
    with open(log, "a") as started:
        started.write(label + "\n")
    while not os.path.exists(path):
        time.sleep(0.01)
    return label


def niceness() -> int:
    return os.nice(0)
