"""Loudness (ITU-R BS.1770-4), true peak, a look-ahead limiter and silence trimming, in numpy.

Everything here works on mono float32 PCM already decoded. The K-weighting filter is applied
in the frequency domain (one FFT pair, exact up to the filter's tail, which the zero padding
absorbs), so no scipy is needed and a 10-minute message is measured in well under a second.
Filter coefficients follow libebur128 and pyloudnorm's "DeMan" variant: the 48 kHz filters of
BS.1770 re-derived for any sample rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]

BLOCK_S: Final = 0.4
STEP_S: Final = 0.1
ABSOLUTE_GATE_LUFS: Final = -70.0
RELATIVE_GATE_LU: Final = -10.0
_OVERSAMPLE: Final = 4
_TAPS_PER_PHASE: Final = 12


Coefficients = tuple[float, float, float]


def _biquad_power(b: Coefficients, a: Coefficients, cos_w: Samples) -> Samples:
    """|H(e^jw)|^2 of one biquad, from cos(w) alone (real arithmetic, no complex arrays)."""

    def power(c: Coefficients) -> Samples:
        # |c0 + c1 z^-1 + c2 z^-2|^2 = c0²+c1²+c2² + 2(c0c1+c1c2) cos w + 2 c0c2 cos 2w
        return np.asarray(
            (c[0] ** 2 + c[1] ** 2 + c[2] ** 2 - 2 * c[0] * c[2])
            + 2 * (c[0] * c[1] + c[1] * c[2]) * cos_w
            + 4 * c[0] * c[2] * cos_w * cos_w,
            dtype=np.float32,
        )

    return np.asarray(power(b) / power(a), dtype=np.float32)


def _k_weighting_gain(n_fft: int, rate: int) -> Samples:
    """Magnitude of the two K-weighting biquads on the rfft bins of an n_fft FFT.

    Only the magnitude is applied (a zero-phase version of the filter): gated loudness is
    a sum of block energies, which the filter's few milliseconds of phase delay do not
    change measurably, and a real gain halves the memory and time of a complex response.
    """
    cos_w = np.cos(np.arange(n_fft // 2 + 1, dtype=np.float64) * (2 * np.pi / n_fft))
    cos_w = cos_w.astype(np.float32)
    # Stage 1: the head's high shelf (+4 dB above ~1.7 kHz).
    k = math.tan(math.pi * 1681.974450955533 / rate)
    q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = _biquad_power(
        ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
        (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0),
        cos_w,
    )
    # Stage 2: the RLB high pass at ~38 Hz.
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    shelf *= _biquad_power(
        (1.0, -2.0, 1.0), (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0), cos_w
    )
    return np.sqrt(shelf, out=shelf)


def fast_fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: pocketfft is several times faster on such sizes."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def k_weight(x: Samples, rate: int) -> Samples:
    """K-weighted copy of x (same length)."""
    if x.size == 0:
        return x.copy()
    # Half a second of zero padding keeps the filter's response to the end of the signal
    # from wrapping round onto its start.
    n_fft = fast_fft_length(x.size + rate // 2)
    spectrum = np.fft.rfft(x.astype(np.float32, copy=False), n=n_fft)
    spectrum *= _k_weighting_gain(n_fft, rate)
    return np.fft.irfft(spectrum, n=n_fft)[: x.size].astype(np.float32, copy=False)


def block_powers(weighted: Samples, rate: int) -> Floats:
    """Mean square of each 400 ms gating block, stepped by 100 ms (75 % overlap)."""
    block = round(BLOCK_S * rate)
    step = round(STEP_S * rate)
    if weighted.size < block:
        # Shorter than one block: the whole signal stands in for it.
        return np.array([float(np.mean(np.square(weighted, dtype=np.float64)))])
    count = (weighted.size - block) // step + 1
    if block == 4 * step:
        # Sum 100 ms steps once, then each block is four neighbouring steps.
        rows = weighted[: (count + 3) * step].reshape(-1, step)
        steps = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
        return np.asarray((steps[:-3] + steps[1:-2] + steps[2:-1] + steps[3:]) / block)
    energy = np.concatenate(([0.0], np.cumsum(np.square(weighted, dtype=np.float64))))
    starts = np.arange(count) * step
    return np.asarray((energy[starts + block] - energy[starts]) / block)


def gated_loudness(powers: Floats) -> float:
    """Integrated loudness in LUFS from block powers; -inf when nothing passes the gates."""
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(powers)
    above = powers[levels > ABSOLUTE_GATE_LUFS]
    if above.size == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(float(above.mean())) + RELATIVE_GATE_LU
    kept = powers[(levels > ABSOLUTE_GATE_LUFS) & (levels > relative)]
    return -0.691 + 10 * math.log10(float(kept.mean()))


def integrated_loudness(x: Samples, rate: int) -> float:
    return gated_loudness(block_powers(k_weight(x, rate), rate))


def _interpolation_phases() -> Floats:
    """Kaiser-windowed sinc taps for the three in-between phases of 4x oversampling.

    Row p-1 holds the taps c[i] = h(i - 6 + p/4), i = 0..11, so that
    sum_i x[n + 6 - i] c[i] is the signal interpolated at n + p/4.
    """
    half = _TAPS_PER_PHASE // 2
    k = np.arange(-half, half)
    phases = []
    for p in range(1, _OVERSAMPLE):
        t = k + p / _OVERSAMPLE
        window = np.i0(6.0 * np.sqrt(1 - (t / half) ** 2)) / np.i0(6.0)
        taps = np.sinc(t) * window
        phases.append(taps / taps.sum())
    return np.array(phases)


_PHASES: Final = _interpolation_phases().astype(np.float32)


def true_peak_envelope(x: Samples) -> Samples:
    """Per-sample absolute true peak: max of |x| and the 4x-oversampled values just after it."""
    envelope = np.abs(x)
    half = _TAPS_PER_PHASE // 2
    for taps in _PHASES:
        between = np.convolve(x, taps, mode="full")[half : half + x.size]
        np.maximum(envelope, np.abs(between), out=envelope)
    return envelope


def true_peak_dbtp(x: Samples) -> float:
    if x.size == 0:
        return -math.inf
    peak = float(true_peak_envelope(x).max())
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _sliding_min(a: Samples, width: int) -> Samples:
    """Minimum over a centred window of odd `width`, in O(n) (van Herk / Gil-Werman)."""
    half = width // 2
    n = a.size
    tail = half + (-(n + 2 * half) % width)
    padded = np.pad(a, (half, tail), constant_values=np.inf).reshape(-1, width)
    prefix = np.minimum.accumulate(padded, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    return np.minimum(suffix[:n], prefix[width - 1 : width - 1 + n])


def _box_mean(a: Samples, width: int) -> Samples:
    half = width // 2
    padded = np.pad(a.astype(np.float64), (half + 1, half), mode="edge")
    sums = np.cumsum(padded)
    return ((sums[width:] - sums[:-width]) / width).astype(np.float32)


def limiter_gain(peaks: Samples, ceiling: float, rate: float, *, hold_s: float = 0.02) -> Samples:
    """A smooth gain curve g <= ceiling / peaks everywhere (look-ahead, hold and release).

    The required gain is spread by a sliding minimum over +-hold_s and then averaged over a
    window of the same half-width: every value averaged is at most the requirement at the
    centre, so the smoothed gain never lets a peak through, and it changes over tens of
    milliseconds instead of clicking. `rate` is the rate of `peaks` (it may be a coarse grid).
    """
    required = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12)).astype(np.float32)
    if float(required.min()) >= 1.0:
        return np.ones_like(required)
    half = max(1, round(hold_s * rate))
    return _box_mean(_sliding_min(required, 2 * half + 1), 2 * half + 1)


def _grain(rate: int) -> int:
    """Samples per millisecond when that is whole, so gating blocks fall on the grid; else 1."""
    return rate // 1000 if rate % 1000 == 0 else 1


def _per_grain(a: Samples, grain: int) -> Samples:
    rows = -(-a.size // grain)
    return np.pad(a, (0, rows * grain - a.size)).reshape(rows, grain)


def _expand(coarse: Samples, grain: int, size: int) -> Samples:
    """Per-sample curve, linear from each grain's value to the next one's."""
    following = np.append(coarse[1:], coarse[-1])
    steps = np.arange(grain, dtype=np.float32) / np.float32(grain)
    curve = coarse[:, None] + (following - coarse)[:, None] * steps
    return np.asarray(curve.reshape(-1)[:size], dtype=np.float32)


def _gated_from_grains(energy: Floats, grain: int, rate: int) -> float:
    """Gated loudness from per-grain K-weighted energy (sum of squares per grain)."""
    block = round(BLOCK_S * rate) // grain
    step = round(STEP_S * rate) // grain
    if energy.size < block:
        return gated_loudness(np.array([energy.sum() / max(1, energy.size * grain)]))
    sums = np.concatenate(([0.0], np.cumsum(energy)))
    starts = np.arange((energy.size - block) // step + 1) * step
    return gated_loudness((sums[starts + block] - sums[starts]) / (block * grain))


@dataclass(frozen=True)
class Normalised:
    samples: Samples
    loudness_lufs: float
    true_peak_dbtp: float
    gain_db: float


def normalise(
    x: Samples,
    rate: int,
    *,
    target_lufs: float,
    peak_dbtp: float,
    weighted: Samples | None = None,
) -> Normalised:
    """Gain to `target_lufs` integrated, then limit so the true peak stays <= `peak_dbtp`.

    The limiter lowers loudness slightly, so the gain is corrected and the limiter rerun
    (a few times at most; a very peaky input ends up limited more and a little short of
    the target rather than clipped). The limiter's gain is a slow curve, so it is worked
    out on a 1 ms grid: the peaks and K-weighted energy of each millisecond are computed
    once, and every pass of the loop costs a thousandth of the per-sample work.
    """
    kx = k_weight(x, rate) if weighted is None else weighted
    measured = gated_loudness(block_powers(kx, rate))
    if not math.isfinite(measured):
        return Normalised(x.copy(), measured, true_peak_dbtp(x), 0.0)
    ceiling = 10 ** ((peak_dbtp - 0.05) / 20)
    grain = _grain(rate)
    peaks = _per_grain(true_peak_envelope(x), grain).max(axis=1)
    rows = _per_grain(kx, grain)
    energy = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    gain = 10 ** ((target_lufs - measured) / 20)
    coarse = limiter_gain(peaks * gain, ceiling, rate / grain)
    reached = measured
    for _ in range(6):
        reached = _gated_from_grains(
            energy * np.square(gain * coarse, dtype=np.float64), grain, rate
        )
        if abs(reached - target_lufs) < 0.05:
            break
        gain *= 10 ** ((target_lufs - reached) / 20)
        coarse = limiter_gain(peaks * gain, ceiling, rate / grain)
    y = x * _expand(coarse * np.float32(gain), grain, x.size)
    peak = true_peak_dbtp(y)
    if peak > peak_dbtp - 0.01:
        # The smooth gain shifts inter-sample peaks a hair; close the last fraction of a dB.
        y *= np.float32(10 ** ((peak_dbtp - 0.02 - peak) / 20))
        peak = true_peak_dbtp(y)
    return Normalised(y, reached, peak, 20 * math.log10(gain))


def frame_levels(weighted: Samples, rate: int, frame_s: float = 0.01) -> Floats:
    """K-weighted level (LUFS-like, dB) of consecutive frames of `frame_s`."""
    frame = max(1, round(frame_s * rate))
    usable = weighted.size // frame * frame
    power = np.square(weighted[:usable], dtype=np.float64).reshape(-1, frame).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.asarray(-0.691 + 10 * np.log10(power))


def speech_bounds(
    weighted: Samples,
    rate: int,
    loudness_lufs: float,
    *,
    lead_s: float = 0.15,
    tail_s: float = 0.3,
) -> tuple[int, int]:
    """Sample range [start, end) from just before the first sound to just after the last.

    A frame counts as sound when it is within 35 dB of the message's loudness and clearly
    (10 dB) above the recording's own noise floor; two such frames in a row are needed, so
    a lone click does not stop the trim.
    """
    frame = max(1, round(0.01 * rate))
    levels = frame_levels(weighted, rate)
    if levels.size == 0 or not math.isfinite(loudness_lufs):
        return 0, weighted.size
    finite = levels[np.isfinite(levels)]
    floor = float(np.percentile(finite, 10)) if finite.size else -math.inf
    threshold = min(max(loudness_lufs - 35.0, floor + 10.0), loudness_lufs - 12.0)
    loud = levels > threshold
    sound = loud[:-1] & loud[1:]
    hits = np.flatnonzero(sound)
    if hits.size == 0:
        return 0, weighted.size
    start = max(0, hits[0] * frame - round(lead_s * rate))
    end = min(weighted.size, (hits[-1] + 2) * frame + round(tail_s * rate))
    return int(start), int(end)
