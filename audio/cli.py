"""The `audio` command line: convert a recording for broadcast, or probe one.

Mounted as ``maeul audio ...``; also runs alone as ``python -m audio.cli``. Success exits 0
and prints one JSON object; a file that cannot be used exits 2 and prints exactly one JSON
object ``{"error": CODE, "detail": TEXT}`` on stdout.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from audio.chimes import CATEGORIES
from audio.errors import AudioError
from audio.pipeline import AudioOptions, probe_file, transcode_file

EXIT_BAD_FILE = 2

app = typer.Typer(
    name="audio",
    help="Convert and probe broadcast audio / 방송 오디오 변환과 검사",
    no_args_is_help=True,
    add_completion=False,
)


class Codec(StrEnum):
    opus = "opus"
    mp3 = "mp3"


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, sort_keys=True))


def _fail(code: str, detail: str) -> NoReturn:
    _emit({"error": code, "detail": detail})
    raise typer.Exit(EXIT_BAD_FILE)


def _require_file(path: Path) -> None:
    if not path.is_file():
        _fail(
            "file_not_found",
            f"파일을 찾을 수 없습니다: {path} / No such file: {path}",
        )


def _codec_for(output: Path, codec: Codec | None) -> Codec:
    if codec is not None:
        return codec
    return Codec.mp3 if output.suffix.lower() == ".mp3" else Codec.opus


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(metavar="IN", help="Recording to convert")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the result")],
    category: Annotated[
        str, typer.Option(help="village_notice, administrative, crime_prevention or disaster")
    ] = "village_notice",
    codec: Annotated[
        Codec | None, typer.Option(help="opus (Ogg) or mp3; default from OUT's suffix")
    ] = None,
    chimes: Annotated[bool, typer.Option(help="Frame the message with chimes")] = True,
    chimes_dir: Annotated[
        Path | None, typer.Option(help="Folder with a city's start/end chime files")
    ] = None,
    target_lufs: Annotated[float, typer.Option(help="Loudness target")] = -16.0,
) -> None:
    """Clean up a recording (trim, loudness, chimes) and encode it for the speakers."""
    if category not in CATEGORIES:
        _fail(
            "unknown_category",
            f"알 수 없는 방송 종류입니다: {category} / Unknown category: {category} "
            f"(expected one of {', '.join(sorted(CATEGORIES))})",
        )
    _require_file(source)
    chosen = _codec_for(output, codec)
    options = AudioOptions(add_chimes=chimes, chimes_dir=chimes_dir, target_lufs=target_lufs)
    try:
        result = transcode_file(source, category=category, options=options, codecs=(chosen,))
    except AudioError as exc:
        _fail(exc.code, exc.detail)
    encoded = result.variants[chosen]
    output.write_bytes(encoded.data)
    _emit(
        {
            "output": str(output),
            "codec": encoded.codec,
            "container": encoded.container,
            "sha256": encoded.sha256,
            "bytes": len(encoded.data),
            "duration_ms": result.duration_ms,
            "speech_duration_ms": result.speech_duration_ms,
            "loudness_lufs": result.loudness_lufs,
            "input_loudness_lufs": result.input_loudness_lufs,
        }
    )


@app.command()
def probe(
    source: Annotated[Path, typer.Argument(metavar="IN", help="Recording to inspect")],
) -> None:
    """Print what a recording is: container, codec, duration, loudness."""
    _require_file(source)
    try:
        info = probe_file(source, AudioOptions(), measure=True)
    except AudioError as exc:
        _fail(exc.code, exc.detail)
    _emit(asdict(info))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
