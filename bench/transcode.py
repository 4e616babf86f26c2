"""Benchmark: the in-process transcode pipeline against the ffmpeg command line doing the same work.

Both turn the same 86-second AAC phone recording into mono 16 kHz Opus at 24 kbit/s in Ogg,
trimming leading and trailing silence and normalising loudness to -16 LUFS / -1 dBTP:

* ours: ``audio.pipeline.transcode_file`` (PyAV decode, numpy BS.1770 gain + true-peak
  limiter, libopus), chimes off so the output is the same message;
* ffmpeg: ``silenceremove`` at both ends (via ``areverse``) and ``loudnorm``, then libopus.

Run with ``python -m bench.transcode`` from the repository root; ``BENCH_SMOKE=1`` uses a
5-second clip and one round.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from audio.pipeline import AudioOptions, transcode_file
from tests.media import make_recording

FFMPEG_FILTERS = (
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.15,"
    "areverse,"
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.3,"
    "areverse,"
    "loudnorm=I=-16:TP=-1:LRA=11"
)


def ffmpeg_command(ffmpeg: str, source: Path, target: Path) -> list[str]:
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-af",
        FFMPEG_FILTERS,
        "-ac",
        "1",
        "-ar",
        "16000",
        "-c:a",
        "libopus",
        "-b:a",
        "24k",
        "-application",
        "voip",
        str(target),
    ]


def _stats(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return round(median, 1), round(p95, 1), round(ordered[-1], 1)


def _time_ms(run: Any) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def ffmpeg_cli_ms(source: Path, rounds: int) -> float | None:
    """The ffmpeg command line's transcode of `source` (median ms of `rounds`); None without
    ffmpeg. The floor under a broadcast's upload: the same work without the gateway."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    with tempfile.TemporaryDirectory(prefix="maeul-ffmpeg-") as scratch:
        target = Path(scratch) / "out.ogg"
        command = ffmpeg_command(ffmpeg, source, target)
        samples = [
            _time_ms(lambda: subprocess.run(command, check=True, capture_output=True))
            for _ in range(max(1, rounds))
        ]
    return _stats(samples)[0]


def run_transcode_bench(rounds: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Time both ways `rounds` times after `warmup` untimed runs; medians, p95, max in ms."""
    seconds = 86.0
    if os.environ.get("BENCH_SMOKE") == "1":
        seconds, rounds, warmup = 5.0, 1, 0
    options = AudioOptions(add_chimes=False)
    result: dict[str, Any] = {"rounds": rounds, "clip_s": seconds}
    with tempfile.TemporaryDirectory(prefix="transcode-bench-") as scratch:
        folder = Path(scratch)
        source = make_recording(folder / "phone.m4a", "m4a", seconds, level_db=-26.0)

        def ours() -> None:
            transcode_file(source, category="village_notice", options=options, codecs=("opus",))

        for _ in range(warmup):
            ours()
        median, p95, worst = _stats([_time_ms(ours) for _ in range(rounds)])
        result.update(pipeline_ms_median=median, pipeline_ms_p95=p95, pipeline_ms_max=worst)

        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            result.update(
                ffmpeg_cli_ms_median=None,
                ffmpeg_cli_ms_p95=None,
                ffmpeg_cli_ms_max=None,
                ratio=None,
                ffmpeg_reason="no ffmpeg binary on PATH (e.g. apt-get install ffmpeg)",
            )
            return result
        command = ffmpeg_command(ffmpeg, source, folder / "ffmpeg.ogg")

        def theirs() -> None:
            subprocess.run(command, check=True, capture_output=True)

        for _ in range(warmup):
            theirs()
        median, p95, worst = _stats([_time_ms(theirs) for _ in range(rounds)])
        result.update(ffmpeg_cli_ms_median=median, ffmpeg_cli_ms_p95=p95, ffmpeg_cli_ms_max=worst)
        result["ratio"] = round(result["pipeline_ms_median"] / median, 3)
    return result


if __name__ == "__main__":
    json.dump(run_transcode_bench(), sys.stdout, indent=2)
    sys.stdout.write("\n")
