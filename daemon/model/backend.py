"""Model backend interface: what the daemon's worker needs from a classifier.

Backends (transformers/torch today, ONNX Runtime later) implement this small surface so the
worker never touches a framework directly. All audio is mono float32 in [-1, 1] at
``sample_rate_hz``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class UtteranceScorer(Protocol):
    """Per-utterance state for a whole-utterance verdict; owned by one worker thread."""

    def push(self, samples: np.ndarray) -> None:
        """Feed the next samples of the utterance (incremental work may happen here)."""

    def result(self) -> np.ndarray:
        """Probabilities ``[n_labels]`` over everything pushed so far."""


@runtime_checkable
class ModelBackend(Protocol):
    name: str
    labels: tuple[str, ...]
    sample_rate_hz: int

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        """``[n, window_samples]`` float32 → probabilities ``[n, n_labels]``."""

    def utterance_scorer(self) -> UtteranceScorer:
        """A fresh scorer for one utterance (the ``utterance`` verdict rule)."""
