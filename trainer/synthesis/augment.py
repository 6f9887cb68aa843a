"""Audio augmentation and noise generators (numpy + soxr), all driven by a passed-in rng.

The generators and :func:`mix_at_snr` are public so the evaluation harness can build
the same noisy conditions. Audio is mono float32 in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from intentd.daemon.errors import DataError
from intentd.trainer.synthesis import crowd
from intentd.trainer.synthesis.signals import (
    NOISE_KINDS,
    TRAIN_NOISE_KINDS,
    _rms,
    _unit_rms,
    brown_noise,
    fit_length,
    hum_noise,
    pink_noise,
    room_impulse,
    white_noise,
)


def load_noise_file(path: str | Path, sample_rate_hz: int = 16000) -> np.ndarray:
    """A user noise recording as mono float32 at ``sample_rate_hz``, unit RMS."""
    import soundfile as sf

    from intentd.daemon.audio.windowing import preprocess

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read noise file ({exc}); use wav/flac/ogg") from None
    a = preprocess(audio, sr, sample_rate_hz)
    if _rms(a) == 0:
        raise DataError(f"{path}: noise file is silent; remove it from the noise list")
    return _unit_rms(a)


def make_noise(kind: str, n: int, rng: np.random.Generator, sample_rate_hz: int = 16000,
               files: Sequence[np.ndarray] = (), crowd_pool: str = "train",
               crowd_talkers: int | None = None) -> np.ndarray:
    """``n`` samples of noise ``kind`` (one of NOISE_KINDS, or "file" to crop ``files``);
    babble and café come from ``crowd_pool`` (evaluation and demo calls use "eval") of
    ``crowd_talkers`` voices (None: the standard 16)."""
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "brown":
        return brown_noise(n, rng)
    if kind == "hum":
        return hum_noise(n, rng, sample_rate_hz)
    if kind in ("babble", "cafe"):
        make = crowd.babble_noise if kind == "babble" else crowd.cafe_noise
        return make(n, rng, sample_rate_hz, pool=crowd_pool,
                    pool_talkers=crowd_talkers or crowd.POOL_TALKERS)
    if kind == "file":
        if not files:
            raise ValueError("noise kind 'file' needs at least one loaded noise file")
        return fit_length(files[int(rng.integers(len(files)))], n, rng)
    raise ValueError(f"unknown noise kind {kind!r}; use one of {(*NOISE_KINDS, 'file')}")


def active_power(x: np.ndarray, sample_rate_hz: int = 16000) -> float:
    """Mean power of the loud frames (within 30 dB of the loudest), so silence padding
    around speech does not change its measured level."""
    frame = max(1, sample_rate_hz // 50)
    m = x.size // frame
    if m == 0:
        return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    p = np.mean(np.square(x[: m * frame].reshape(m, frame), dtype=np.float64), axis=1)
    loud = p[p >= p.max() * 1e-3]
    return float(loud.mean()) if loud.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float,
               rng: np.random.Generator) -> np.ndarray:
    """``speech`` plus a random stretch of ``noise`` scaled to ``snr_db`` (active level)."""
    n = fit_length(np.asarray(noise, dtype=np.float32), speech.size, rng)
    ps, pn = active_power(speech), float(np.mean(np.square(n, dtype=np.float64)))
    if ps == 0 or pn == 0:
        return speech.astype(np.float32, copy=True)
    scale = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * n).astype(np.float32)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def limit_peak(audio: np.ndarray, peak: float = 0.98) -> np.ndarray:
    m = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (peak / m)).astype(np.float32) if m > peak else audio.astype(np.float32)


def mulaw_encode(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    """Float [-1, 1] -> uint8 μ-law codes (G.711-style companding)."""
    x = np.clip(audio, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.round((y + 1.0) / 2.0 * mu).astype(np.uint8)


def mulaw_decode(codes: np.ndarray, mu: int = 255) -> np.ndarray:
    y = codes.astype(np.float64) / mu * 2.0 - 1.0
    return (np.sign(y) * ((1.0 + mu) ** np.abs(y) - 1.0) / mu).astype(np.float32)


def _band_limit(audio: np.ndarray, sample_rate_hz: int, low_hz: float,
                high_hz: float) -> np.ndarray:
    # Causal, like a phone channel's filters. A brick-wall FFT mask over a whole call rang
    # ~0.5 s ahead of every loud onset, so the VAD started utterances that early.
    sos = butter(6, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def telephone(audio: np.ndarray, sample_rate_hz: int = 16000) -> np.ndarray:
    """Narrowband phone line: 300-3400 Hz, 8 kHz μ-law round trip, back at the input rate."""
    import soxr

    narrow = _band_limit(audio, sample_rate_hz, 300.0, 3400.0)
    at8k = soxr.resample(narrow, sample_rate_hz, 8000, quality="HQ")
    coded = mulaw_decode(mulaw_encode(limit_peak(at8k, 0.99)))
    back = soxr.resample(coded, 8000, sample_rate_hz, quality="HQ").astype(np.float32)
    out = np.zeros(audio.size, dtype=np.float32)
    out[: min(audio.size, back.size)] = back[: audio.size]
    return out


def speed_perturb(audio: np.ndarray, factor: float, sample_rate_hz: int = 16000) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like tape speed)."""
    import soxr

    if abs(factor - 1.0) < 1e-6:
        return audio.astype(np.float32, copy=True)
    return soxr.resample(audio, round(sample_rate_hz * factor), sample_rate_hz,
                         quality="HQ").astype(np.float32)


def reverb(audio: np.ndarray, rng: np.random.Generator, sample_rate_hz: int = 16000,
           rt60_s: float | None = None) -> np.ndarray:
    """Convolve with :func:`room_impulse`, keep the input length, restore the input level."""
    ir = room_impulse(rng, sample_rate_hz, rt60_s)
    size = audio.size + ir.size - 1
    nfft = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, nfft) * np.fft.rfft(ir, nfft), nfft)[: audio.size]
    r_in, r_out = _rms(audio), _rms(wet)
    return (wet * (r_in / r_out if r_out > 0 else 1.0)).astype(np.float32)


@dataclass(frozen=True)
class AugmentOptions:
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_prob: float = 0.7
    noise_kinds: tuple[str, ...] = TRAIN_NOISE_KINDS
    telephone_prob: float = 0.15
    reverb_prob: float = 0.25
    speed_prob: float = 0.2
    speed_range: tuple[float, float] = (0.9, 1.1)
    gain_db: tuple[float, float] = (-12.0, 3.0)
    crowd_pool: str = "train"  # "eval" for test splits: babble / café never heard in training


def augment(audio: np.ndarray, rng: np.random.Generator, options: AugmentOptions,
            sample_rate_hz: int = 16000, noise_files: Sequence[np.ndarray] = ()
            ) -> tuple[np.ndarray, list[str]]:
    """One random chain (speed, reverb, noise, telephone, gain); returns audio + its steps.

    Every random draw happens whether or not the step is applied, so changing one
    probability does not reshuffle the rest of an utterance's choices.
    """
    draws = rng.random(4)
    steps: list[str] = []
    x = audio.astype(np.float32, copy=True)
    speed = float(rng.uniform(*options.speed_range))
    if draws[0] < options.speed_prob:
        x = speed_perturb(x, speed, sample_rate_hz)
        steps.append(f"speed{speed:.2f}")
    if draws[1] < options.reverb_prob:
        x = reverb(x, rng, sample_rate_hz)
        steps.append("reverb")
    kinds = (*options.noise_kinds, "file") if noise_files else options.noise_kinds
    kind = str(kinds[int(rng.integers(len(kinds)))]) if kinds else ""
    snr = float(rng.uniform(*options.snr_db))
    if draws[2] < options.noise_prob and kind:
        noise = make_noise(kind, x.size, rng, sample_rate_hz, noise_files,
                           options.crowd_pool)
        x = mix_at_snr(x, noise, snr, rng)
        steps.append(f"{kind}@{snr:.0f}dB")
    if draws[3] < options.telephone_prob:
        x = telephone(x, sample_rate_hz)
        steps.append("phone")
    x = limit_peak(apply_gain(limit_peak(x, 0.9), float(rng.uniform(*options.gain_db))))
    return x, steps
