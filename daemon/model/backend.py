"""Model backend interface: what the daemon's worker needs from a classifier.

Backends (transformers/torch today, ONNX Runtime later) implement this small surface so the
worker never touches a framework directly. All audio is mono float32 in [-1, 1] at
``sample_rate_hz``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    # The utterance scorer works while audio arrives (a streaming front-end): the streams
    # send each piece as it is heard. False: it only collects until the end, so a stream
    # sends the utterance's audio once, at its end (one hand-over instead of ten a second).
    # A backend without the attribute is taken as streaming.
    streams_audio: bool

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        """``[n, window_samples]`` float32 → probabilities ``[n, n_labels]``."""

    def utterance_scorer(self) -> UtteranceScorer:
        """A fresh scorer for one utterance (the ``utterance`` verdict rule)."""


WINDOW_BATCH = 16  # windows per model run for window models: bounds activation memory


class BatchClassifier(Protocol):
    def classify_batch(self, audios: list[np.ndarray]) -> np.ndarray: ...


class CollectingScorer:
    """For a model that sees the whole utterance at once (window models on torch or ONNX):
    collects the audio; ``result`` runs ``classify_batch`` once on all of it."""

    def __init__(self, backend: BatchClassifier) -> None:
        self._backend = backend
        self._chunks: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        self._chunks.append(np.asarray(samples, dtype=np.float32).copy())

    def result(self) -> np.ndarray:
        if not self._chunks:
            raise ValueError("result() called before any audio was pushed")
        return self._backend.classify_batch([np.concatenate(self._chunks)])[0]


def score_many(backend: ModelBackend, scorers: Sequence[UtteranceScorer]
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``[n, n_labels]`` for several finished utterances of ``backend``, and
    for a model with slot heads their probabilities ``[n, slot_space.width]`` (else None).

    A backend that can do them together (one head call for all, see the compact backend)
    offers ``score_many`` (returning the probabilities, or both arrays); any other is asked
    one scorer at a time. Either way each row is what that utterance scores alone.
    """
    many = getattr(backend, "score_many", None)
    if many is not None:
        got = many(scorers)
        if isinstance(got, tuple):
            probs, slot_probs = got
            return (np.asarray(probs, dtype=np.float64),
                    None if slot_probs is None else np.asarray(slot_probs, dtype=np.float64))
        return np.asarray(got, dtype=np.float64), None
    return np.stack([np.asarray(s.result(), dtype=np.float64) for s in scorers]), None
