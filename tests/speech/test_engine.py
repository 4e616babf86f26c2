"""Synthesis: the fake voice for the plumbing, espeak-ng for real audio when it is installed."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from audio.speech.engine import (
    EspeakEngine,
    Pcm,
    ToneEngine,
    engine_from_name,
    read_wav,
    register_engine,
    speak,
    speak_to_wav,
)
from audio.speech.errors import (
    EmptyText,
    SpeechEngineUnavailable,
    UnknownSpeechEngine,
    UnspeakableText,
)

ESPEAK_MISSING = shutil.which("espeak-ng") is None
needs_espeak = pytest.mark.skipif(ESPEAK_MISSING, reason="espeak-ng is not installed")


def test_engine_receives_normalised_text() -> None:
    engine = ToneEngine()
    speak("오후 3시에 2명 모입니다.", engine=engine)
    assert engine.spoken == ["오후 세 시에 두 명 모입니다."]


def test_repeat_reads_the_message_twice_with_a_notice() -> None:
    engine = ToneEngine()
    once = speak("회의가 있습니다.", engine=ToneEngine())
    twice = speak("회의가 있습니다.", engine=engine, repeat=True)
    assert engine.spoken == ["회의가 있습니다.", "다시 한번 알려드립니다."]
    assert twice.duration_s > 2 * once.duration_s


def test_bad_text_never_reaches_the_engine() -> None:
    engine = ToneEngine()
    with pytest.raises(EmptyText):
        speak("   ", engine=engine)
    with pytest.raises(UnspeakableText):
        speak("🎉🎉 ~~~", engine=engine)
    assert engine.spoken == []


def test_registry_plugs_in_a_voice_by_name() -> None:
    class CityVoice(ToneEngine):
        name = "city-test"

    register_engine("city-test", CityVoice)
    assert isinstance(engine_from_name("city-test", sample_rate=8000), CityVoice)
    assert isinstance(engine_from_name("espeak"), EspeakEngine)
    with pytest.raises(UnknownSpeechEngine) as raised:
        engine_from_name("nope")
    assert raised.value.code == "unknown_speech_engine"


def test_missing_binary_is_a_typed_503(tmp_path: Path) -> None:
    engine = EspeakEngine(binary=tmp_path / "no-such-espeak")
    with pytest.raises(SpeechEngineUnavailable) as raised:
        engine.synthesize("안녕하세요")
    assert (raised.value.code, raised.value.status) == ("speech_engine_unavailable", 503)


def test_read_wav_ignores_a_streaming_header_length(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    samples = (0.5 * np.sin(np.linspace(0, 100, 1600))).astype(np.float32)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    data = bytearray(path.read_bytes())
    data[40:44] = (0x7FFFF000).to_bytes(4, "little")  # what a pipe-fed writer leaves
    pcm = read_wav(bytes(data))
    assert pcm.sample_rate == 16000
    np.testing.assert_allclose(pcm.samples, samples, atol=1e-3)


@needs_espeak
def test_espeak_speaks_korean(tmp_path: Path) -> None:
    text = "오늘 오후 3시에 마을회관에서 주민 회의가 있습니다. 많은 참석 바랍니다."
    path = tmp_path / "notice.wav"
    pcm = speak_to_wav(text, path, engine=EspeakEngine())
    assert isinstance(pcm, Pcm)
    # About 30 syllables: a few seconds of speech, not a clipped blip nor a runaway.
    assert 2.0 < pcm.duration_s < 20.0
    rms = float(np.sqrt(np.mean(pcm.samples**2)))
    assert rms > 0.01
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getframerate() == pcm.sample_rate
        assert wav.getnframes() == pcm.samples.size


@needs_espeak
def test_espeak_reads_every_clause_of_a_long_sentence() -> None:
    engine = EspeakEngine()
    short = engine.synthesize("상수도 공사를 진행합니다.")
    long = engine.synthesize(
        "오늘 오후 세 시부터 마을회관 앞 도로에서 상수도 공사를 진행하고 공사 차량이 드나들며 "
        "소음이 발생하니까 주민 여러분께서는 통행에 각별히 주의해 주시기 바랍니다"
    )
    assert long.duration_s > 3 * short.duration_s


@needs_espeak
def test_espeak_text_starting_with_a_dash_is_not_an_option() -> None:
    pcm = EspeakEngine().synthesize("--help 안내 방송입니다")
    assert pcm.duration_s > 0.5
