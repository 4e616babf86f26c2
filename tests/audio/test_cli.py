"""The `audio` command line: exit 0 and JSON on success, exit 2 and one error object if not."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audio.cli import app
from tests import media
from tests.audio.listen import hear

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _json(output: str) -> dict[str, object]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    parsed = json.loads(lines[0])
    assert isinstance(parsed, dict)
    return parsed


def test_probe_prints_the_facts(recordings: dict[str, Path]) -> None:
    result = runner.invoke(app, ["probe", str(recordings["webm-opus"])])

    assert result.exit_code == 0, result.output
    facts = _json(result.output)
    assert facts["container"] == "webm"
    assert facts["codec"] == "opus"
    assert facts["sample_rate"] == 48000
    assert facts["channels"] == 1
    assert facts["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert isinstance(facts["loudness_lufs"], float)


@pytest.mark.parametrize(("suffix", "codec"), [(".ogg", "opus"), (".mp3", "mp3")])
def test_convert_writes_the_codec_the_name_asks_for(
    recordings: dict[str, Path], tmp_path: Path, suffix: str, codec: str
) -> None:
    out = tmp_path / f"out{suffix}"

    result = runner.invoke(
        app, ["convert", str(recordings["3gp-amrnb"]), str(out), "--category", "disaster"]
    )

    assert result.exit_code == 0, result.output
    summary = _json(result.output)
    assert summary["codec"] == codec
    assert hear(out.read_bytes()).codec == codec


def test_convert_with_explicit_codec_and_no_chimes(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "message.bin"

    result = runner.invoke(
        app, ["convert", str(recordings["mp3"]), str(out), "--codec", "mp3", "--no-chimes"]
    )

    summary = _json(result.output)
    assert result.exit_code == 0
    assert summary["duration_ms"] == summary["speech_duration_ms"]
    assert hear(out.read_bytes()).codec == "mp3"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (media.make_hls_playlist, "unsupported_audio"),
        (media.make_text, "unsupported_audio"),
        (media.make_empty, "empty_audio"),
        (media.make_lying_wav, "corrupt_audio"),
        (media.make_silence, "silent_audio"),
    ],
)
@pytest.mark.parametrize("command", ["convert", "probe"])
def test_bad_files_exit_2_with_one_error_object(
    tmp_path: Path, make: Callable[[Path], Path], code: str, command: str
) -> None:
    bad = make(tmp_path / "bad.mp3")
    args = [command, str(bad)] + ([str(tmp_path / "out.ogg")] if command == "convert" else [])

    result = runner.invoke(app, args)

    if command == "probe" and code == "silent_audio":
        # Probing only describes; silence is a reason not to broadcast, not to describe.
        assert result.exit_code == 0
        assert _json(result.output)["loudness_lufs"] is None
        return
    assert result.exit_code == 2
    error = _json(result.output)
    assert set(error) == {"error", "detail"}
    assert error["error"] == code
    assert not (tmp_path / "out.ogg").exists()


def test_missing_file_and_unknown_category_are_json_errors(
    recordings: dict[str, Path], tmp_path: Path
) -> None:
    missing = runner.invoke(app, ["probe", str(tmp_path / "nope.m4a")])
    category = runner.invoke(
        app, ["convert", str(recordings["m4a"]), str(tmp_path / "o.ogg"), "--category", "party"]
    )

    assert (missing.exit_code, _json(missing.output)["error"]) == (2, "file_not_found")
    assert (category.exit_code, _json(category.output)["error"]) == (2, "unknown_category")


def test_runs_standalone_as_a_module(recordings: dict[str, Path], tmp_path: Path) -> None:
    bad = media.make_ffconcat(tmp_path / "list.wav")
    ok = subprocess.run(
        [sys.executable, "-m", "audio.cli", "probe", str(recordings["flac"])],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    refused = subprocess.run(
        [sys.executable, "-m", "audio.cli", "probe", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )

    assert ok.returncode == 0, ok.stderr
    assert _json(ok.stdout)["codec"] == "flac"
    assert refused.returncode == 2
    assert _json(refused.stdout)["error"] == "unsupported_audio"
