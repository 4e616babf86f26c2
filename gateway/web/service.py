"""Services behind the pages: speak typed text the way a broadcast would, for a preview."""

from __future__ import annotations

import tempfile
from pathlib import Path

from audio.speech.engine import synthesize_file
from gateway.broadcasts.service import Runtime


async def speak_preview(runtime: Runtime, text: str, *, repeat: bool) -> bytes:
    """A WAV of `text` read by the gateway's own speech engine (what the speakers will say)."""
    directory = runtime.settings.data_dir / "uploads"
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        wav = Path(scratch) / "preview.wav"
        await runtime.worker.run(
            synthesize_file, text, str(wav), engine=runtime.settings.speech_engine, repeat=repeat
        )
        return wav.read_bytes()
