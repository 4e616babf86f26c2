"""The `tts` command line: read an announcement aloud into a broadcast file.

Mounted by the main command line as ``app.add_typer(tts_app, name="tts")``, then::

    maeul tts "오후 3시에 회의가 있습니다." out.ogg [--repeat] [--category C]
    maeul tts --normalize-only "오후 3시에 회의가 있습니다."

OUT ending in .ogg (or anything else) gets broadcast Opus with chimes, .mp3 gets MP3, .wav
gets the bare synthesised voice. Success exits 0 and prints one JSON object (or, with
--normalize-only, the text as it will be spoken); bad text exits 2 and prints exactly one
JSON object ``{"error": CODE, "detail": TEXT}``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from audio.chimes import CATEGORIES
from audio.errors import AudioError
from audio.pipeline import AudioOptions, transcode_file
from audio.speech.engine import engine_from_name, speak_to_wav
from audio.speech.normalize import normalize, validate_text

EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="tts",
    help="Announcement text to speech / 방송 문구 음성 변환",
    add_completion=False,
    # A group stops parsing at its first positional argument by default; this one has no
    # sub-commands, so options may follow TEXT and OUT.
    context_settings={"allow_interspersed_args": True},
)


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, sort_keys=True))


def _fail(code: str, detail: str) -> NoReturn:
    _emit({"error": code, "detail": detail})
    raise typer.Exit(EXIT_BAD_INPUT)


@app.callback(invoke_without_command=True)
def tts(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="Announcement text (Korean)")],
    output: Annotated[
        Path | None, typer.Argument(metavar="OUT", help=".ogg, .mp3 or .wav to write")
    ] = None,
    normalize_only: Annotated[
        bool, typer.Option("--normalize-only", help="Print the text as it will be spoken")
    ] = False,
    repeat: Annotated[
        bool, typer.Option("--repeat", help="Read the message twice / 두 번 방송")
    ] = False,
    category: Annotated[
        str, typer.Option(help="village_notice, administrative, crime_prevention or disaster")
    ] = "village_notice",
    engine: Annotated[str, typer.Option(help="Registered speech engine")] = "espeak",
    chimes: Annotated[bool, typer.Option(help="Frame the message with chimes")] = True,
) -> None:
    """Synthesise TEXT into OUT, or print it normalised."""
    try:
        if normalize_only:
            typer.echo(normalize(validate_text(text)))
            return
        if output is None:
            _fail("missing_output", "출력 파일을 지정하세요. / Give an OUT file to write.")
        if category not in CATEGORIES:
            _fail(
                "unknown_category",
                f"알 수 없는 방송 종류입니다: {category} / Unknown category: {category} "
                f"(expected one of {', '.join(sorted(CATEGORIES))})",
            )
        _emit(_synthesise(text, output, category, engine, repeat=repeat, chimes=chimes))
    except AudioError as exc:
        _fail(exc.code, exc.detail)


def _synthesise(
    text: str, output: Path, category: str, engine_name: str, *, repeat: bool, chimes: bool
) -> dict[str, Any]:
    engine = engine_from_name(engine_name)
    suffix = output.suffix.lower()
    if suffix == ".wav":
        pcm = speak_to_wav(text, output, engine=engine, repeat=repeat)
        return {
            "output": str(output),
            "codec": "pcm_s16le",
            "container": "wav",
            "sample_rate": pcm.sample_rate,
            "duration_ms": round(pcm.duration_s * 1000),
        }
    codec = "mp3" if suffix == ".mp3" else "opus"
    with tempfile.TemporaryDirectory(prefix="maeul-tts-") as scratch:
        voice = Path(scratch) / "voice.wav"
        speak_to_wav(text, voice, engine=engine, repeat=repeat)
        result = transcode_file(
            voice, category=category, options=AudioOptions(add_chimes=chimes), codecs=(codec,)
        )
    encoded = result.variants[codec]
    output.write_bytes(encoded.data)
    return {
        "output": str(output),
        "codec": encoded.codec,
        "container": encoded.container,
        "sample_rate": encoded.sample_rate,
        "sha256": encoded.sha256,
        "bytes": len(encoded.data),
        "duration_ms": result.duration_ms,
        "speech_duration_ms": result.speech_duration_ms,
        "loudness_lufs": result.loudness_lufs,
    }
