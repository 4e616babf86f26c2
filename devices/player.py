"""The speaker's sound output: a player plays 16-bit mono PCM to the end, and cancelling it
stops the sound. `CommandPlayer` pipes it into a command such as ``aplay``: a whole recording
at once (`CommandPlayer.play`), or a stream written as it comes (`CommandPlayer.open`, for live
broadcasts).

Exceptions::

    PlayerError     the player command failed, stopped early or stopped taking its audio (the
                    command is acked failed/player_error)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
from collections.abc import Sequence
from typing import Final, Protocol

from audio.playback import Pcm
from devices.agent_config import ConfigError

_PLAYER_CHUNK: Final = 32 * 1024
# The pipe into the player: a quarter of a second of 16 kHz audio (the kernel's default is 64 KiB).
_PIPE_BYTES: Final = 8192
# The end of the player's error output kept for the log (aplay reports underruns there).
_STDERR_TAIL: Final = 4096


class PlayerError(Exception):
    """The player command failed."""


class PlayerStream(Protocol):
    """A player taking PCM as it comes; `finish` waits for the end, `abort` stops at once."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes written that the player has not taken yet (beyond the pipe it reads)."""
        ...

    @property
    def exited(self) -> int | None:
        """The player's exit status once it has exited."""
        ...

    def write(self, data: bytes) -> None: ...

    async def finish(self, timeout_s: float) -> None:
        """No more audio: wait until the player has played it and exited cleanly."""
        ...

    async def abort(self) -> None: ...


class Player(Protocol):
    async def play(self, pcm: Pcm) -> int:
        """Play to the end and return the milliseconds played; cancelling stops the sound."""
        ...

    async def open(self) -> PlayerStream:
        """Start the player for audio written as it comes (a live stream)."""
        ...


class CommandStream:
    """One player process reading raw PCM on its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, grace_s: float) -> None:
        assert proc.stdin is not None
        assert proc.stderr is not None
        self._proc = proc
        self._stdin = proc.stdin
        self._name = name
        self._grace = grace_s
        self._errors: collections.deque[bytes] = collections.deque()
        self._reading = asyncio.ensure_future(self._read_errors(proc.stderr))

    @classmethod
    async def start(cls, command: Sequence[str], grace_s: float) -> CommandStream:
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise PlayerError(f"cannot start {command[0]}: {exc}") from exc
        assert proc.stdin is not None
        pipe = proc.stdin.transport.get_extra_info("pipe")
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            # A small pipe keeps what the player has not taken in view (`backlog_bytes`), so a
            # player that stops reading is noticed within seconds.
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        return cls(proc, command[0], grace_s)

    @property
    def backlog_bytes(self) -> int:
        return self._stdin.transport.get_write_buffer_size()

    @property
    def exited(self) -> int | None:
        return self._proc.returncode

    def write(self, data: bytes) -> None:
        # A player that exited leaves the pipe closed: the write is dropped here, and the caller
        # sees `exited`.
        if not self._stdin.is_closing():
            self._stdin.write(data)

    async def drain(self) -> None:
        await self._stdin.drain()

    async def finish(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await self._stdin.drain()
                self._stdin.close()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await self._stdin.wait_closed()
                code = await self._proc.wait()
        except TimeoutError:
            await self.abort()
            raise PlayerError(f"{self._name} did not finish within {timeout_s:.0f} s") from None
        except BaseException:
            await self.abort()
            raise
        await self._reading
        if code != 0:
            detail = b"".join(self._errors).decode(errors="replace").strip()
            raise PlayerError(f"{self._name} exited with {code}: {detail[-200:]}")

    async def abort(self) -> None:
        proc = self._proc
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self._grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._stdin.close()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading

    async def _read_errors(self, stderr: asyncio.StreamReader) -> None:
        kept = 0
        while chunk := await stderr.read(1024):
            self._errors.append(chunk)
            kept += len(chunk)
            while kept > _STDERR_TAIL and len(self._errors) > 1:
                kept -= len(self._errors.popleft())


class CommandPlayer:
    """Pipes raw PCM into a player command's stdin (``aplay -t raw -f S16_LE -r 16000 -c 1 -``)."""

    def __init__(self, command: Sequence[str], *, stop_grace_s: float = 2.0) -> None:
        if not command:
            raise ConfigError("the player command is empty")
        self.command = tuple(command)
        self._grace = stop_grace_s

    async def open(self) -> CommandStream:
        return await CommandStream.start(self.command, self._grace)

    async def play(self, pcm: Pcm) -> int:
        stream = await self.open()
        try:
            view = memoryview(pcm.samples)
            for offset in range(0, len(view), _PLAYER_CHUNK):
                stream.write(bytes(view[offset : offset + _PLAYER_CHUNK]))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await stream.drain()
                if stream.exited is not None:
                    break
        except BaseException:
            await stream.abort()
            raise
        # The caller bounds the whole play; here, only a player that never exits is cut short.
        await stream.finish(timeout_s=pcm.duration_ms / 1000 * 1.5 + 30.0)
        return pcm.duration_ms
