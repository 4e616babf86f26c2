"""The speaker's sound output: a player plays 16-bit mono PCM to the end, and cancelling it
stops the sound. `CommandPlayer` pipes it into a command such as ``aplay``.

Exceptions::

    PlayerError     the player command failed (the command is acked failed/player_error)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final, Protocol

from audio.playback import Pcm
from devices.agent_config import ConfigError

_PLAYER_CHUNK: Final = 32 * 1024


class PlayerError(Exception):
    """The player command failed."""


class Player(Protocol):
    async def play(self, pcm: Pcm) -> int:
        """Play to the end and return the milliseconds played; cancelling stops the sound."""
        ...


class CommandPlayer:
    """Pipes raw PCM into a player command's stdin (``aplay -t raw -f S16_LE -r 16000 -c 1 -``)."""

    def __init__(self, command: Sequence[str], *, stop_grace_s: float = 2.0) -> None:
        if not command:
            raise ConfigError("the player command is empty")
        self.command = tuple(command)
        self._grace = stop_grace_s

    async def play(self, pcm: Pcm) -> int:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise PlayerError(f"cannot start {self.command[0]}: {exc}") from exc
        assert proc.stdin is not None
        assert proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        try:
            view = memoryview(pcm.samples)
            for offset in range(0, len(view), _PLAYER_CHUNK):
                proc.stdin.write(view[offset : offset + _PLAYER_CHUNK])
                await proc.stdin.drain()
            proc.stdin.close()
            code = await proc.wait()
        except (BrokenPipeError, ConnectionResetError):
            code = await proc.wait()
        except BaseException:
            await self._terminate(proc)
            errors.cancel()
            raise
        detail = (await errors).decode(errors="replace").strip()
        if code != 0:
            raise PlayerError(f"{self.command[0]} exited with {code}: {detail[:200]}")
        return pcm.duration_ms

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self._grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
