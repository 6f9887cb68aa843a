"""Signal primitives shared by augmentation, crowd noise and evaluation: unit-level noises,
looping a noise to length, a synthetic room response, and the max-frame-energy rule.

Kept below :mod:`.augment`, :mod:`.crowd` and :mod:`intentd.trainer.evaluation.snr`, which
all build on it, so none of them imports another in a circle.
"""

from __future__ import annotations

import numpy as np

# What training mixes in by default; "cafe" is there for evaluation (and --noise-kind).
TRAIN_NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum", "babble")
NOISE_KINDS: tuple[str, ...] = (*TRAIN_NOISE_KINDS, "cafe")

FRAME_S = 0.02


def frame_energies(x: np.ndarray, sample_rate_hz: int = 16000,
                   frame_s: float = FRAME_S) -> np.ndarray:
    """Sum of squares of each whole ``frame_s`` frame (a short tail is its own frame)."""
    frame = max(1, round(sample_rate_hz * frame_s))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros(0)
    pad = (-x.size) % frame
    if pad:
        x = np.concatenate([x, np.zeros(pad)])
    return np.sum(np.square(x.reshape(-1, frame)), axis=1)


def max_frame_energy(x: np.ndarray, sample_rate_hz: int = 16000,
                     frame_s: float = FRAME_S) -> float:
    e = frame_energies(x, sample_rate_hz, frame_s)
    return float(e.max()) if e.size else 0.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return (x / r).astype(np.float32) if r > 0 else x.astype(np.float32)


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent, unit RMS."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    # An FFT of a clip's arbitrary length can be ~10x slower than one of the next 5-smooth
    # length (these FFTs were a fifth of ``synth``'s time); the extra samples are cut off.
    from scipy.fft import next_fast_len  # [train]: intentd-eval's --help must not need it

    m = next_fast_len(n, real=True)
    spec = rng.standard_normal(m // 2 + 1) + 1j * rng.standard_normal(m // 2 + 1)
    f = np.arange(m // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return _unit_rms(np.fft.irfft(spec, m)[:n])


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _colored(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _colored(n, rng, 2.0)


def hum_noise(n: int, rng: np.random.Generator, sample_rate_hz: int = 16000) -> np.ndarray:
    """Appliance hum: mains harmonics (50/60 Hz) with a slow wobble over a fan-like rumble."""
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    mains = 50.0 if rng.random() < 0.5 else 60.0
    out = np.zeros(n, dtype=np.float64)
    wobble = 1.0 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    for h in range(1, 9):
        amp = rng.uniform(0.2, 1.0) / h
        out += amp * np.sin(2 * np.pi * mains * h * wobble * t + rng.uniform(0, 2 * np.pi))
    out = _unit_rms(out) + rng.uniform(0.1, 0.5) * brown_noise(n, rng)
    return _unit_rms(out)


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample stretch of ``noise``, looping it when it is too short."""
    if noise.size == 0:
        return np.zeros(n, dtype=np.float32)
    if noise.size < n:
        noise = np.tile(noise, -(-n // noise.size) + 1)
    start = int(rng.integers(0, noise.size - n + 1))
    return noise[start : start + n].astype(np.float32, copy=False)


def room_impulse(rng: np.random.Generator, sample_rate_hz: int = 16000,
                 rt60_s: float | None = None) -> np.ndarray:
    """Synthetic room response: direct path, sparse early reflections, exponential tail."""
    rt60 = rt60_s if rt60_s is not None else float(rng.uniform(0.15, 0.7))
    n = max(1, int(rt60 * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    tail[: int(0.005 * sample_rate_hz)] = 0.0
    ir = 0.4 * tail / max(np.abs(tail).max(), 1e-9)
    for _ in range(int(rng.integers(3, 8))):
        k = int(rng.uniform(0.003, 0.04) * sample_rate_hz)
        if k < n:
            ir[k] += rng.uniform(0.2, 0.6) * (1 if rng.random() < 0.5 else -1)
    ir[0] = 1.0
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)
