"""BS.1770 measurement, true peak and the limiter, checked against pyloudnorm and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audio import loudness
from tests import media
from tests.audio.listen import lufs, true_peak_db


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("level_db", [-35.0, -20.0])
def test_integrated_loudness_matches_pyloudnorm(rate: int, level_db: float) -> None:
    x = media.speech_like(8.0, rate, level_db=level_db)

    ours = loudness.integrated_loudness(x, rate)

    assert ours == pytest.approx(lufs(x.astype(np.float64), rate), abs=0.3)


def test_full_scale_sine_at_1khz_reads_minus_3_lufs() -> None:
    # The calibration point of BS.1770: a 0 dBFS 997 Hz sine in one channel is -3.01 LUFS.
    rate = 48000
    t = np.arange(rate * 5) / rate
    x = np.sin(2 * np.pi * 997 * t).astype(np.float32)

    assert loudness.integrated_loudness(x, rate) == pytest.approx(-3.01, abs=0.05)


def test_digital_silence_has_no_loudness() -> None:
    assert loudness.integrated_loudness(np.zeros(16000 * 3, np.float32), 16000) == -math.inf


def test_true_peak_sees_peaks_between_samples() -> None:
    rate = 16000
    n = np.arange(rate)
    # A quarter-rate sine sampled at 45 degrees: every sample is 0.707 of the real peak.
    x = (0.5 * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)

    assert 20 * math.log10(float(np.abs(x).max())) == pytest.approx(-9.03, abs=0.05)
    assert loudness.true_peak_dbtp(x) == pytest.approx(-6.02, abs=0.2)


@pytest.mark.parametrize("level_db", [-40.0, -25.0, -8.0])
def test_normalise_reaches_target_under_the_ceiling(level_db: float) -> None:
    rate = 16000
    x = media.speech_like(10.0, rate, level_db=level_db, seed=3)

    result = loudness.normalise(x, rate, target_lufs=-16.0, peak_dbtp=-1.0)

    assert lufs(result.samples.astype(np.float64), rate) == pytest.approx(-16.0, abs=0.5)
    assert true_peak_db(result.samples.astype(np.float64)) <= -1.0 + 0.05
    assert result.true_peak_dbtp <= -1.0


def test_limiter_gain_never_lets_a_peak_through_and_stays_smooth() -> None:
    rng = np.random.default_rng(5)
    peaks = np.abs(rng.normal(0, 0.3, 16000)).astype(np.float32)
    peaks[4000] = 4.0

    gain = loudness.limiter_gain(peaks, 1.0, 16000)

    assert np.all(peaks * gain <= 1.0 + 1e-6)
    assert np.max(np.abs(np.diff(gain))) < 0.05


def test_sliding_min_equals_brute_force() -> None:
    rng = np.random.default_rng(9)
    a = rng.random(257).astype(np.float32)
    for width in (1, 3, 7, 31):
        half = width // 2
        expected = [a[max(0, i - half) : i + half + 1].min() for i in range(a.size)]
        assert np.array_equal(loudness._sliding_min(a, width), np.array(expected, np.float32))


def test_fast_fft_length_is_smooth_and_not_smaller() -> None:
    for n in (1, 7, 1000, 1_376_108, 9_600_001):
        m = loudness.fast_fft_length(n)
        assert m >= n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1


def test_speech_bounds_keep_the_voice_and_drop_the_silence() -> None:
    rate = 16000
    x = media.speech_like(6.0, rate, lead_s=1.5, tail_s=2.0)
    weighted = loudness.k_weight(x, rate)

    start, end = loudness.speech_bounds(weighted, rate, loudness.integrated_loudness(x, rate))

    voice = np.flatnonzero(np.abs(x) > 0.001)
    assert start <= voice[0]
    assert end >= voice[-1]
    assert start >= 1.5 * rate - 0.3 * rate
    assert end <= (6.0 - 2.0) * rate + 0.4 * rate
