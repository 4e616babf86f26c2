"""The transcode pipeline: every phone format in, clean broadcast audio out, bad files refused."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audio.errors import (
    AudioError,
    AudioTooLarge,
    AudioTooLong,
    CorruptAudio,
    EmptyAudio,
    SilentAudio,
    UnsupportedAudio,
)
from audio.pipeline import AudioOptions, Transcoded, probe_file, transcode_file
from tests import media
from tests.audio.listen import hear, lufs, true_peak_db

PLAIN = AudioOptions(add_chimes=False)


@pytest.mark.parametrize("kind", media.RECORDING_KINDS)
def test_every_format_converts_to_mono_16k_opus_in_ogg(
    recordings: dict[str, Path], kind: str
) -> None:
    result = transcode_file(recordings[kind], category="village_notice", options=PLAIN)

    opus = result.variants["opus"]
    heard = hear(opus.data)
    assert (opus.codec, opus.container, opus.mime_type) == ("opus", "ogg", "audio/ogg")
    assert (heard.container, heard.codec, heard.channels) == ("ogg", "opus", 1)
    assert heard.coded_rate == 16000
    assert opus.sample_rate == 16000
    assert opus.bitrate == 24000
    # Opus always decodes at 48 kHz; the message plays exactly as long as encoded.
    assert abs(heard.samples.size / 48 - opus.duration_ms) <= 1
    assert abs(lufs(heard.samples, 48000) - PLAIN.target_lufs) <= 1.0
    assert abs(result.loudness_lufs - PLAIN.target_lufs) <= 0.5


@pytest.mark.parametrize("kind", ["m4a", "3gp-amrnb", "webm-opus", "wav-mulaw"])
def test_mp3_variant_is_mono_16k_and_as_loud(recordings: dict[str, Path], kind: str) -> None:
    result = transcode_file(recordings[kind], category="administrative", options=PLAIN)

    mp3 = result.variants["mp3"]
    heard = hear(mp3.data)
    assert (mp3.codec, mp3.container, mp3.mime_type) == ("mp3", "mp3", "audio/mpeg")
    assert (heard.codec, heard.sample_rate, heard.channels) == ("mp3", 16000, 1)
    assert abs(lufs(heard.samples, 16000) - PLAIN.target_lufs) <= 1.0


def test_only_requested_codecs_are_encoded(recordings: dict[str, Path]) -> None:
    only_opus = transcode_file(
        recordings["m4a"], category="disaster", options=PLAIN, codecs=("opus",)
    )
    only_mp3 = transcode_file(recordings["m4a"], category="disaster", options=PLAIN, codecs=["mp3"])

    assert set(only_opus.variants) == {"opus"}
    assert set(only_mp3.variants) == {"mp3"}


def test_unknown_codec_or_category_is_a_programming_error(recordings: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="codecs"):
        transcode_file(recordings["m4a"], category="disaster", options=PLAIN, codecs=("aac",))
    with pytest.raises(ValueError, match="category"):
        transcode_file(recordings["m4a"], category="party", options=PLAIN)


def test_quiet_phone_recording_is_raised_to_target_without_passing_the_peak_ceiling(
    phone_recording: Path,
) -> None:
    options = AudioOptions()
    result = transcode_file(phone_recording, category="village_notice", options=options)

    assert result.input_loudness_lufs < -28
    for codec, rate in (("opus", 48000), ("mp3", 16000)):
        heard = hear(result.variants[codec].data)
        # Chimes are levelled to the same target, so the whole message measures on target.
        assert abs(lufs(heard.samples, rate) - options.target_lufs) <= 1.0
        # The PCM is limited to -1 dBTP; lossy coding may add up to about a dB on top.
        assert true_peak_db(heard.samples) <= options.true_peak_dbtp + 1.0


def test_loudness_target_and_ceiling_are_configurable(recordings: dict[str, Path]) -> None:
    options = AudioOptions(add_chimes=False, target_lufs=-23.0, true_peak_dbtp=-3.0)
    result = transcode_file(recordings["flac"], category="village_notice", options=options)

    heard = hear(result.variants["mp3"].data)
    assert abs(lufs(heard.samples, 16000) - (-23.0)) <= 1.0
    assert true_peak_db(heard.samples) <= -3.0 + 1.0


def test_leading_and_trailing_silence_is_trimmed(media_dir: Path) -> None:
    path = media.make_recording(media_dir / "padded.wav", "wav-s16", 6.0)
    # speech_like puts 0.8 s of silence before and 1.0 s after the voice.
    trimmed = transcode_file(path, category="village_notice", options=PLAIN)
    kept = transcode_file(
        path, category="village_notice", options=AudioOptions(add_chimes=False, trim_silence=False)
    )

    assert kept.speech_duration_ms == 6000
    assert trimmed.speech_duration_ms < 6000 - 1200
    # ...but no speech is cut: 6 s minus the silences, with short margins kept.
    assert trimmed.speech_duration_ms >= 6000 - 1800 - 200
    assert trimmed.duration_ms == trimmed.speech_duration_ms


def test_chimes_frame_the_message_and_disaster_sounds_different(
    recordings: dict[str, Path],
) -> None:
    notice = transcode_file(recordings["m4a"], category="village_notice", options=AudioOptions())
    police = transcode_file(recordings["m4a"], category="crime_prevention", options=AudioOptions())
    disaster = transcode_file(recordings["m4a"], category="disaster", options=AudioOptions())

    assert notice.duration_ms > notice.speech_duration_ms + 2000
    assert disaster.duration_ms > disaster.speech_duration_ms + 2000
    assert notice.speech_duration_ms == disaster.speech_duration_ms
    assert police.variants["opus"].sha256 == notice.variants["opus"].sha256
    assert disaster.variants["opus"].sha256 != notice.variants["opus"].sha256
    notice_start = hear(notice.variants["mp3"].data).samples[:16000]
    disaster_start = hear(disaster.variants["mp3"].data).samples[:16000]
    # The alert tone sweeps far higher than the bell's first note.
    assert _dominant_hz(disaster_start[8000:12000]) > 900
    assert _dominant_hz(notice_start[1000:5000]) < 600


def _dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def test_city_chime_files_replace_the_built_in_ones(
    recordings: dict[str, Path], media_dir: Path, tmp_path: Path
) -> None:
    chimes = tmp_path / "chimes"
    chimes.mkdir()
    media.make_recording(chimes / "start.disaster.wav", "wav-s16", 1.0, level_db=-12.0)
    media.make_text(chimes / "end.wav")  # broken: the built-in end chime must play instead
    built_in = transcode_file(recordings["flac"], category="disaster", options=AudioOptions())
    custom = transcode_file(
        recordings["flac"], category="disaster", options=AudioOptions(chimes_dir=chimes)
    )
    other = transcode_file(
        recordings["flac"], category="village_notice", options=AudioOptions(chimes_dir=chimes)
    )
    default_notice = transcode_file(
        recordings["flac"], category="village_notice", options=AudioOptions()
    )

    assert custom.variants["opus"].sha256 != built_in.variants["opus"].sha256
    assert custom.duration_ms < built_in.duration_ms  # a 1 s start chime instead of 4.4 s
    assert other.variants["opus"].sha256 == default_notice.variants["opus"].sha256


def test_same_input_gives_byte_identical_output(recordings: dict[str, Path]) -> None:
    first = transcode_file(recordings["ogg-opus"], category="disaster", options=AudioOptions())
    second = transcode_file(recordings["ogg-opus"], category="disaster", options=AudioOptions())

    for codec in ("opus", "mp3"):
        assert first.variants[codec].data == second.variants[codec].data


def test_result_reports_source_and_sha256(recordings: dict[str, Path]) -> None:
    import hashlib

    result: Transcoded = transcode_file(recordings["m4a"], category="disaster", options=PLAIN)

    assert result.source.container == "m4a"
    assert result.source.codec == "aac"
    assert result.source.channels == 2
    assert result.source.duration_s == pytest.approx(3.0, abs=0.05)
    for encoded in result.variants.values():
        assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()


def test_probe_reads_headers_and_measures_on_request(recordings: dict[str, Path]) -> None:
    plain = probe_file(recordings["3gp-amrnb"])
    measured = probe_file(recordings["3gp-amrnb"], measure=True)

    assert (plain.container, plain.codec, plain.sample_rate, plain.channels) == (
        "3gp",
        "amr_nb",
        8000,
        1,
    )
    assert plain.loudness_lufs is None
    assert measured.loudness_lufs is not None
    assert -32 < measured.loudness_lufs < -20


# ---- hostile inputs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "code", "status"),
    [
        (media.make_empty, EmptyAudio, "empty_audio", 422),
        (media.make_truncated, CorruptAudio, "corrupt_audio", 422),
        (lambda p: media.make_truncated(p, "flac"), CorruptAudio, "corrupt_audio", 422),
        (lambda p: media.make_truncated(p, "webm-opus"), CorruptAudio, "corrupt_audio", 422),
        (media.make_random, UnsupportedAudio, "unsupported_audio", 422),
        (media.make_text, UnsupportedAudio, "unsupported_audio", 422),
        (media.make_hls_playlist, UnsupportedAudio, "unsupported_audio", 422),
        (media.make_ffconcat, UnsupportedAudio, "unsupported_audio", 422),
        (media.make_lying_wav, CorruptAudio, "corrupt_audio", 422),
        (media.make_video_only, UnsupportedAudio, "unsupported_audio", 422),
        (media.make_unsupported_codec, UnsupportedAudio, "unsupported_audio", 422),
        (
            lambda p: media.make_unsupported_codec(p, variant="wma-in-asf"),
            UnsupportedAudio,
            "unsupported_audio",
            422,
        ),
        (media.make_silence, SilentAudio, "silent_audio", 422),
        (lambda p: media.make_silence(p, kind="m4a"), SilentAudio, "silent_audio", 422),
        (lambda p: media.make_long(p, 660.0), AudioTooLong, "audio_too_long", 422),
    ],
    ids=[
        "empty",
        "truncated-m4a",
        "truncated-flac",
        "truncated-webm",
        "random-bytes",
        "text",
        "hls",
        "ffconcat",
        "lying-wav",
        "video-only",
        "adpcm-in-wav",
        "wma-in-asf",
        "silence-wav",
        "silence-m4a",
        "eleven-minutes",
    ],
)
@pytest.mark.parametrize("disguise", [".mp3", ".wav", ".m3u8"])
def test_hostile_input_raises_the_right_error(
    tmp_path: Path,
    make: Callable[[Path], Path],
    error: type[AudioError],
    code: str,
    status: int,
    disguise: str,
) -> None:
    # The name never matters: only the bytes decide.
    path = make(tmp_path / f"upload{disguise}")

    with pytest.raises(error) as raised:
        transcode_file(path, category="disaster", options=AudioOptions())

    assert raised.value.code == code
    assert raised.value.status == status
    assert " / " in raised.value.detail  # Korean / English


def test_a_cut_upload_with_its_index_up_front_is_corrupt(tmp_path: Path) -> None:
    # "Fast start" MP4: the index comes first, so the cut file still opens; the header's
    # duration then promises more than the samples deliver.
    path = tmp_path / "faststart.m4a"
    voice = media.speech_like(6.0, 44100)[None, :]
    media.encode_samples(
        path, "ipod", "aac", 44100, voice, 96_000, container_options={"movflags": "+faststart"}
    )
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptAudio, match="truncated"):
        transcode_file(path, category="disaster", options=AudioOptions())


def test_a_wav_with_a_header_and_no_samples_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "header-only.wav"
    path.write_bytes(media.wav_header(0, 16000, 1, 16))

    with pytest.raises(EmptyAudio):
        transcode_file(path, category="disaster", options=AudioOptions())


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = media.make_oversized(tmp_path / "big.wav", 256 * 1024)

    with pytest.raises(AudioTooLarge) as raised:
        transcode_file(path, category="disaster", options=AudioOptions(max_bytes=256 * 1024))

    assert (raised.value.code, raised.value.status) == ("audio_too_large", 413)


def test_header_duration_over_the_limit_is_refused(recordings: dict[str, Path]) -> None:
    with pytest.raises(AudioTooLong):
        transcode_file(
            recordings["m4a"],
            category="disaster",
            options=AudioOptions(max_duration_s=2.0),
        )


def test_file_that_hides_its_length_stops_decoding_at_the_limit(tmp_path: Path) -> None:
    # Two hours of audio in ~1.4 MB with no length in its header: only counting the
    # decoded samples can notice, and it must stop long before hours of PCM pile up.
    path = media.make_long(tmp_path / "endless.flac", 2 * 3600.0, hide_duration=True)
    assert probe_file(path).duration_s is None

    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong) as raised:
            transcode_file(path, category="disaster", options=AudioOptions(max_duration_s=120.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert "Stopped decoding" in raised.value.detail
    two_hours_of_pcm = 2 * 3600 * 16000 * 4
    assert peak < two_hours_of_pcm / 20


def test_playlist_that_names_a_real_audio_file_is_not_followed(
    tmp_path: Path, recordings: dict[str, Path]
) -> None:
    playlist = tmp_path / "list.mp3"
    playlist.write_text(f"ffconcat version 1.0\nfile '{recordings['wav-s16']}'\n")
    hls = tmp_path / "list.wav"
    hls.write_text(f"#EXTM3U\n#EXTINF:3,\n{recordings['wav-s16']}\n#EXT-X-ENDLIST\n")

    for path in (playlist, hls):
        with pytest.raises(UnsupportedAudio):
            transcode_file(path, category="disaster", options=AudioOptions())
