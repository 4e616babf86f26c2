"""Speech engines: the voice that reads normalised Korean text, and the registry naming them.

Every engine follows `SpeechEngine`: a `name` and `synthesize(text) -> Pcm` (mono float32
samples and their rate). The text it receives is already normalised (numbers in words).
`EspeakEngine` is the built-in, offline voice; `ToneEngine` is a fake for tests.

A city plugs in a better voice by registering a factory under a name, before the gateway or
the command line asks for it::

    from audio.speech.engine import Pcm, register_engine

    class CityVoice:
        name = "city"
        def __init__(self, *, speed: int = 150) -> None: ...
        def synthesize(self, text: str) -> Pcm: ...

    register_engine("city", CityVoice)
    engine = engine_from_name("city", speed=160)

Run synthesis off the event loop: it blocks on a subprocess.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from audio.speech.errors import (
    SpeechEngineFailed,
    SpeechEngineUnavailable,
    UnknownSpeechEngine,
    UnspeakableText,
)
from audio.speech.languages import (
    LANGUAGES,
    join_languages,
    spoken_languages,
    validate_foreign_text,
)
from audio.speech.normalize import normalize, split_clauses, validate_text

__all__ = [
    "REPEAT_NOTICE",
    "EspeakEngine",
    "Pcm",
    "SpeechEngine",
    "ToneEngine",
    "engine_from_name",
    "register_engine",
    "speak",
    "speak_in_languages",
    "speak_to_wav",
]

Samples = npt.NDArray[np.float32]
REPEAT_NOTICE: Final = "다시 한번 알려드립니다."
CLAUSE_PAUSE_S: Final = 0.25
REPEAT_PAUSE_S: Final = 0.8


@dataclass(frozen=True)
class Pcm:
    samples: Samples
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate


class SpeechEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> Pcm: ...


def _silence(seconds: float, rate: int) -> Samples:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def _join(parts: list[Samples], pause_s: float, rate: int) -> Samples:
    if not parts:
        return np.zeros(0, dtype=np.float32)
    gap = _silence(pause_s, rate)
    joined: list[Samples] = []
    for index, part in enumerate(parts):
        if index:
            joined.append(gap)
        joined.append(part)
    return np.concatenate(joined)


class EspeakEngine:
    """espeak-ng's offline Korean voice, one process per clause so none is clipped."""

    name = "espeak"

    def __init__(
        self,
        voice: str = "ko",
        speed: int = 150,
        pitch: int = 50,
        binary: str | Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.voice = voice
        self.speed = speed
        self.pitch = pitch
        self.binary = str(binary) if binary is not None else "espeak-ng"
        self.timeout_s = timeout_s

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise SpeechEngineUnavailable(
                f"음성 합성기 {self.binary}를 찾을 수 없습니다. / "
                f"The speech synthesizer {self.binary} is not installed."
            )
        return found

    def synthesize(self, text: str) -> Pcm:
        executable = self._executable()
        clauses = [self._speak_clause(executable, clause) for clause in split_clauses(text)]
        rate = clauses[0].sample_rate if clauses else 22050
        return Pcm(_join([c.samples for c in clauses], CLAUSE_PAUSE_S, rate), rate)

    def _speak_clause(self, executable: str, clause: str) -> Pcm:
        # The text goes in on stdin (-b 1: UTF-8), never through a shell or as an argument,
        # so a clause starting with "-" is never taken for an option.
        command = [
            executable, "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch),
            "-b", "1", "--stdout",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                input=clause.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SpeechEngineFailed(
                f"음성 합성이 {self.timeout_s:g}초 안에 끝나지 않았습니다. / "
                f"Speech synthesis took longer than {self.timeout_s:g} s."
            ) from None
        except OSError as exc:
            raise SpeechEngineUnavailable(
                f"음성 합성기를 실행할 수 없습니다. / Cannot run the speech synthesizer: {exc}"
            ) from None
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise SpeechEngineFailed(
                f"음성 합성기가 오류로 끝났습니다 ({done.returncode}). / "
                f"The speech synthesizer exited with {done.returncode}: {reason}"
            )
        return read_wav(done.stdout)


def read_wav(data: bytes) -> Pcm:
    """16-bit mono PCM WAV bytes as float32.

    espeak-ng streaming to stdout cannot seek back, so its header claims a huge length; the
    samples are whatever follows the header.
    """
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SpeechEngineFailed(
            f"음성 합성기의 출력을 읽을 수 없습니다. / Unreadable synthesizer output: {exc}"
        ) from None
    if width != 2:
        raise SpeechEngineFailed(
            f"지원하지 않는 음성 형식입니다. / Unsupported sample width: {width * 8} bits"
        )
    usable = len(frames) - len(frames) % (2 * channels)
    pcm = np.frombuffer(frames[:usable], dtype="<i2").reshape(-1, channels)
    samples = (pcm.astype(np.float32) / 32768.0).mean(axis=1, dtype=np.float32)
    return Pcm(samples, rate)


class ToneEngine:
    """A fake voice for tests: a short tone per syllable, silence for spaces."""

    name = "tone"

    def __init__(
        self, sample_rate: int = 16000, syllable_s: float = 0.08, voice: str = "ko"
    ) -> None:
        self.sample_rate = sample_rate
        self.syllable_s = syllable_s
        self.voice = voice
        self.spoken: list[str] = []

    def synthesize(self, text: str) -> Pcm:
        self.spoken.append(text)
        n = round(self.syllable_s * self.sample_rate)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        parts = [tone if not ch.isspace() else np.zeros(n, np.float32) for ch in text]
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return Pcm(samples, self.sample_rate)


_REGISTRY: dict[str, Callable[..., SpeechEngine]] = {
    "espeak": EspeakEngine,
    "tone": ToneEngine,
}


def register_engine(name: str, factory: Callable[..., SpeechEngine]) -> None:
    _REGISTRY[name] = factory


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def engine_from_name(name: str, **options: Any) -> SpeechEngine:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownSpeechEngine(
            f"알 수 없는 음성 엔진입니다: {name} / Unknown speech engine: {name} "
            f"(expected one of {', '.join(engine_names())})"
        ) from None
    return factory(**options)


def speak(text: str, *, engine: SpeechEngine, repeat: bool = False) -> Pcm:
    """Validate, normalise and synthesise `text`; with `repeat`, read it twice."""
    spoken = normalize(validate_text(text))
    if not spoken:
        raise UnspeakableText()
    message = engine.synthesize(spoken)
    if not repeat:
        return message
    notice = engine.synthesize(REPEAT_NOTICE)
    rate = message.sample_rate
    if notice.sample_rate != rate:
        raise SpeechEngineFailed(
            "음성 엔진의 샘플레이트가 일정하지 않습니다. / The engine changed its sample rate."
        )
    samples = _join([message.samples, notice.samples, message.samples], REPEAT_PAUSE_S, rate)
    return Pcm(samples, rate)


def write_wav(pcm: Pcm, path: Path) -> None:
    clipped = np.clip(pcm.samples, -1.0, 1.0)
    ints = np.round(clipped * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(pcm.sample_rate)
        wav.writeframes(ints.tobytes())


def speak_to_wav(text: str, path: Path, *, engine: SpeechEngine, repeat: bool = False) -> Pcm:
    """Write `text` as a mono 16-bit WAV at the engine's rate; returns what was written."""
    pcm = speak(text, engine=engine, repeat=repeat)
    write_wav(pcm, path)
    return pcm


def speak_in_languages(
    text: str,
    texts: Mapping[str, str],
    languages: Sequence[str],
    *,
    engine: str,
    repeat: bool = False,
) -> Pcm:
    """Korean first, then each of `languages` (see ``spoken_languages``) read from `texts` by
    its own voice, LANGUAGE_PAUSE_S apart."""
    korean = speak(text, engine=engine_from_name(engine), repeat=repeat)
    parts = [(korean.samples, korean.sample_rate)]
    for tag in spoken_languages(texts, languages):
        voice = engine_from_name(engine, voice=LANGUAGES[tag].voice)
        reading = voice.synthesize(validate_foreign_text(texts[tag]))
        parts.append((reading.samples, reading.sample_rate))
    samples, rate = join_languages(parts)
    return Pcm(samples, rate)


def synthesize_file(
    text: str,
    path: str,
    *,
    engine: str = "espeak",
    repeat: bool = False,
    texts: Mapping[str, str] | None = None,
    languages: Sequence[str] = (),
) -> int:
    """Speak `text` (then `languages` from `texts`) into a WAV at `path` with the named
    engine; returns its length in ms.

    A plain module-level function so the gateway can run it in its audio worker process.
    """
    pcm = speak_in_languages(text, texts or {}, languages, engine=engine, repeat=repeat)
    write_wav(pcm, Path(path))
    return round(pcm.duration_s * 1000)
