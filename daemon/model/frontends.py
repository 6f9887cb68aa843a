"""The compact model's frozen front-ends, by the name a model's config records.

- ``speech_embedding``: Google's keyword-spotting embedding (:mod:`.embedding`), 96-d
  per 80 ms, computed while the utterance streams in. Models saved before front-ends had
  names use it.
- ``whisper_tiny_en``: Whisper tiny.en's encoder (:mod:`.frontend_whisper`), 384-d per
  80 ms, computed at the end of the utterance.

Each offers the same small surface, so the head, the trainer's cache and the daemon's
scorer do not care which one runs. ``weights`` names a model's own copy of the front-end's
weights (Whisper's encoder tuned with the head: ``intentd-train tune-encoder``); None is the
stock front-end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

SPEECH_EMBEDDING = "speech_embedding"
WHISPER_TINY_EN = "whisper_tiny_en"
FRONTENDS: tuple[str, ...] = (SPEECH_EMBEDDING, WHISPER_TINY_EN)
SAMPLE_RATE_HZ = 16000


class Streaming(Protocol):
    """Incremental embedding of one utterance (see
    ``intentd.daemon.model.embedding.StreamingEmbedder``)."""

    @property
    def n_samples(self) -> int: ...

    @property
    def n_embeddings(self) -> int: ...

    def push(self, samples: np.ndarray) -> np.ndarray: ...

    def finish(self) -> np.ndarray: ...


def check(name: str) -> str:
    if name not in FRONTENDS:
        raise ValueError(f"unknown front-end {name!r}; choose one of {', '.join(FRONTENDS)}")
    return name


def _module(name: str) -> ModuleType:
    """The front-end's module; each has ``EMBEDDING_DIM``, ``embed_many`` and ``version``."""
    if check(name) == WHISPER_TINY_EN:
        from intentd.daemon.model import frontend_whisper

        return frontend_whisper
    from intentd.daemon.model import embedding

    return embedding


def streams(name: str) -> bool:
    """Whether the front-end embeds while the utterance streams in (else at its end)."""
    return check(name) == SPEECH_EMBEDDING


def dim(name: str) -> int:
    return int(_module(name).EMBEDDING_DIM)


def _check_weights(name: str, weights: Path | None) -> None:
    if weights is not None and name != WHISPER_TINY_EN:
        raise ValueError(f"front-end {name!r} has no tunable weights (got {weights})")


def embed_many(name: str, audios: Sequence[np.ndarray], threads: int = 1,
               weights: Path | None = None) -> list[np.ndarray]:
    """``[T_i, dim]`` per 16 kHz clip."""
    _check_weights(name, weights)
    if weights is None:
        return _module(name).embed_many(audios, threads)
    return _module(name).embed_many(audios, threads, weights)


def streaming(name: str, threads: int = 1, batch_embeddings: int = 1,
              weights: Path | None = None) -> Streaming:
    _check_weights(name, weights)
    module = _module(name)
    if name == WHISPER_TINY_EN:
        return module.StreamingWhisper(threads, weights)
    return module.StreamingEmbedder(threads=threads, batch_embeddings=batch_embeddings)


def version(name: str, weights: Path | None = None) -> str:
    """Identifies the front-end's weights and recipe (the trainer's cache key)."""
    _check_weights(name, weights)
    if weights is None:
        return _module(name).version()
    return _module(name).version(weights)
