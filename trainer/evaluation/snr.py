"""Noise for evaluation conditions, mixed the way the Picovoice Rhino benchmark does.

The SNR is the ratio of the MAXIMUM frame energies of speech and noise (20 ms frames), not
of average powers: ``10*log10(max_frame_energy(speech) / max_frame_energy(k*noise)) = snr``.
Peaks are what a listener (and a VAD) notices, and a max is insensitive to how much
silence the speech track contains. The frame energies live in
:mod:`intentd.trainer.synthesis.signals` (crowd noise caps its clatter by the same rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis.signals import max_frame_energy


def noise_gain(speech_max_energy: float, noise_max_energy: float, snr_db: float) -> float:
    """Amplitude factor k for the noise so that the max-frame-energy SNR is ``snr_db``."""
    if speech_max_energy <= 0 or noise_max_energy <= 0:
        return 0.0
    return float(np.sqrt(speech_max_energy / (noise_max_energy * 10.0 ** (snr_db / 10.0))))


def mix_max_energy(speech: np.ndarray, noise: np.ndarray, snr_db: float,
                   sample_rate_hz: int = 16000) -> np.ndarray:
    """``speech + k*noise`` (same length) at a max-frame-energy SNR of ``snr_db``."""
    if noise.size != speech.size:
        raise ValueError(f"noise has {noise.size} samples, speech {speech.size}")
    k = noise_gain(max_frame_energy(speech, sample_rate_hz),
                   max_frame_energy(noise, sample_rate_hz), snr_db)
    return (speech + k * noise).astype(np.float32)


class NoiseMaker:
    """Seeded noise of one kind (``intentd.trainer.synthesis.augment`` generators) or user files."""

    def __init__(self, kind: str, files: Sequence[np.ndarray] = (), seed: int = 0,
                 sample_rate_hz: int = 16000) -> None:
        self.kind = "file" if files else kind
        self.files = list(files)
        self.sample_rate_hz = sample_rate_hz
        self.rng = np.random.default_rng([seed, 0xE7A1])

    def make(self, n: int) -> np.ndarray:
        return aug.make_noise(self.kind, n, self.rng, self.sample_rate_hz, self.files,
                              crowd_pool="eval")


def noise_floor(n: int, rng: np.random.Generator, level_dbfs: float = -60.0) -> np.ndarray:
    """Very low pink noise: the "silence" between utterances of a real recording."""
    return (aug.pink_noise(n, rng) * 10.0 ** (level_dbfs / 20.0)).astype(np.float32)
