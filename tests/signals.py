"""Deterministic speech-like test signals shared by the front-end tests."""

from __future__ import annotations

import numpy as np

SR = 16000


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated tone + noise: speech-like enough to give varied embeddings."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)
