"""Services behind the pages: speak typed text the way a broadcast would, for a preview."""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from audio.speech.normalize import validate_text
from audio.worker import PREVIEW_PRIORITY
from gateway.auth import Principal
from gateway.datafiles import private_dir
from gateway.deps import Runtime
from gateway.errors import TooManyRequests

_MINUTE: Final = timedelta(minutes=1)


class PreviewGate:
    """How many previews each person has running or waiting, and started in the last minute.

    Previews are this replica's own work (its audio worker), so the counts are kept in memory
    per replica; a person's previews wait in the lowest lane and never hold up a broadcast,
    and the gate keeps one person from filling that lane for everyone else.
    """

    def __init__(self, *, concurrency: int, per_minute: int) -> None:
        self.concurrency = concurrency
        self.per_minute = per_minute
        # Only people with a preview running, or started within the minute: a person who
        # previewed once is forgotten a minute later, so the gate never grows with the staff.
        self._active: dict[str, int] = {}
        self._started: dict[str, deque[datetime]] = {}

    def people(self) -> int:
        """How many people the gate holds anything for."""
        return len(self._active.keys() | self._started.keys())

    @contextmanager
    def admit(self, person: str, now: datetime) -> Iterator[None]:
        """Hold one of `person`'s preview places for the block, or refuse with 429."""
        self._forget_idle(now)
        if self._active.get(person, 0) >= self.concurrency:
            raise TooManyRequests(
                "preview_busy",
                ko=f"미리듣기를 이미 {self.concurrency}개 만들고 있습니다. "
                "끝난 뒤 다시 시도해 주세요.",
                en=f"You already have {self.concurrency} previews in progress; "
                "try again when one has finished.",
                retry_after_s=5,
            )
        started = self._started.get(person, deque())
        if len(started) >= self.per_minute:
            wait = (started[0] + _MINUTE - now).total_seconds()
            raise TooManyRequests(
                "preview_rate_limited",
                ko=f"미리듣기는 1분에 {self.per_minute}번까지 가능합니다. "
                "잠시 후 다시 시도해 주세요.",
                en=f"Previews are limited to {self.per_minute} a minute; try again shortly.",
                retry_after_s=max(1, math.ceil(wait)),
            )
        started.append(now)
        self._started[person] = started
        self._active[person] = self._active.get(person, 0) + 1
        try:
            yield
        finally:
            self._active[person] -= 1
            if not self._active[person]:
                del self._active[person]

    def _forget_idle(self, now: datetime) -> None:
        for person in list(self._started):
            started = self._started[person]
            while started and started[0] <= now - _MINUTE:
                started.popleft()
            if not started:
                del self._started[person]


def person_of(principal: Principal) -> str:
    """Whose previews these are: the account, or the bootstrap token as a person of its own."""
    if principal.user_id is None:
        return f"token:{principal.name}"
    return f"user:{principal.user_id}"


async def speak_preview(
    runtime: Runtime, gate: PreviewGate, principal: Principal, text: str, *, repeat: bool
) -> bytes:
    """A WAV of `text` read by the gateway's own speech engine (what the speakers will say),
    made in the lowest lane of the audio worker."""
    validate_text(text)  # refused text neither waits in line nor counts against the person
    with gate.admit(person_of(principal), runtime.clock.now()):
        directory = private_dir(runtime.settings.data_dir / "uploads")
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            wav = Path(scratch) / "preview.wav"
            await runtime.worker.speak(
                text,
                wav,
                engine=runtime.settings.speech_engine,
                repeat=repeat,
                priority=PREVIEW_PRIORITY,
            )
            # Minutes of speech make megabytes: read off the event loop.
            return await asyncio.to_thread(wav.read_bytes)
