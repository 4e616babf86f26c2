"""`maeul tts`, through a wrapper mounted the way the main command line mounts it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from audio.speech.cli import app as tts_app

root = typer.Typer()
root.add_typer(tts_app, name="tts")


@root.command()
def version() -> None:
    """A sibling command, so `tts` is mounted as a real sub-group."""


runner = CliRunner()
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)


def test_normalize_only_prints_spoken_text() -> None:
    result = runner.invoke(root, ["tts", "--normalize-only", "오후 3시, 15명 참석 ☎ 112"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "오후 세 시, 열다섯 명 참석 전화 일일이"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["tts", "   ", "out.ogg"], "empty_text"),
        (["tts", "--normalize-only", "★★★"], "unspeakable_text"),
        (["tts", "가" * 2001, "out.ogg"], "text_too_long"),
        (["tts", "안녕하세요"], "missing_output"),
        (["tts", "안녕하세요", "out.ogg", "--category", "party"], "unknown_category"),
        (["tts", "안녕하세요", "out.ogg", "--engine", "nope"], "unknown_speech_engine"),
    ],
)
def test_bad_input_exits_2_with_one_json_error(args: list[str], code: str) -> None:
    result = runner.invoke(root, args)
    assert result.exit_code == 2
    body = json.loads(result.output)
    assert body["error"] == code
    assert set(body) == {"error", "detail"}


def test_tone_engine_to_wav(tmp_path: Path) -> None:
    out = tmp_path / "voice.wav"
    result = runner.invoke(root, ["tts", "회의가 있습니다", str(out), "--engine", "tone"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["container"] == "wav"
    assert out.stat().st_size > 44


@needs_espeak
def test_tts_to_broadcast_ogg(tmp_path: Path) -> None:
    out = tmp_path / "notice.ogg"
    result = runner.invoke(
        root,
        ["tts", "오후 3시에 회의가 있습니다.", str(out), "--repeat", "--category", "disaster"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["codec"], report["sample_rate"]) == ("opus", 16000)
    data = out.read_bytes()
    # OpusHead: the channel count at byte 9 and the encoder's input rate at bytes 12-15.
    head = data.index(b"OpusHead")
    assert data[head + 9] == 1
    assert int.from_bytes(data[head + 12 : head + 16], "little") == 16000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.channels == 1
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 0.01
    assert report["speech_duration_ms"] > 2000
