"""Mid-command pauses, as real speakers make them, in generated test audio.

Synthetic voices never hesitate; real speakers do: on 619 crowd-sourced spoken commands,
16% hold an internal pause of 800 ms or more. ``democall`` therefore speaks some commands in
two halves with a pause between (``intentd-eval`` inserts its pauses into whole renderings,
``intentd.trainer.evaluation.streams``). The daemon keeps such a command in one utterance and
shortens the pause before the classifier hears it (``vad.max_pause_ms``,
``intentd.daemon.audio.segmenter``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

PAUSE_S = (0.3, 1.2)  # all within the daemon's 1.3 s hangover: one utterance each
# What the classifier hears of a pause: the daemon keeps silences under vad.min_pause_ms
# (300) whole and cuts longer ones to vad.max_pause_ms (60), so training pauses (synth
# --pause-share) span the gaps it can hear, not the ones the speaker made.
TRAIN_PAUSE_S = (0.03, 0.3)
MIN_WORDS = 4  # a pause needs at least two words on each side


def speech_bounds(audio: np.ndarray, sample_rate_hz: int = 16000,
                  floor_db: float = -40.0) -> tuple[int, int]:
    """``[start, end)`` samples of the part louder than ``floor_db`` below the loudest
    10 ms frame; (0, 0) for silence."""
    frame = max(1, sample_rate_hz // 100)
    m = audio.size // frame
    if m == 0:
        return (0, 0)
    p = np.mean(np.square(audio[: m * frame].reshape(m, frame), dtype=np.float64), axis=1)
    if p.max() <= 0:
        return (0, 0)
    loud = np.flatnonzero(p >= p.max() * 10.0 ** (floor_db / 10.0))
    return (int(loud[0]) * frame, int(loud[-1] + 1) * frame)


def trim(audio: np.ndarray, sample_rate_hz: int = 16000) -> np.ndarray:
    s, e = speech_bounds(audio, sample_rate_hz)
    return audio[s:e]


def split_at(text: str, rng: random.Random) -> int:
    """A word index to pause before, with at least two words on each side; 0 when the
    text is too short to hold a pause."""
    n = len(text.split())
    return rng.randint(2, n - 2) if n >= MIN_WORDS else 0


def speak_with_pause(text: str, k: int, pause_s: float, speak: Callable[[str], np.ndarray],
                     sample_rate_hz: int) -> np.ndarray:
    """The audible parts of two renderings (words ``[:k]`` and ``[k:]``) with ``pause_s``
    of silence between them."""
    words = text.split()
    if not 0 < k < len(words):
        raise ValueError(f"split index {k} out of range for {len(words)} words")
    a = speak(" ".join(words[:k]))
    b = speak(" ".join(words[k:]))
    gap = np.zeros(int(pause_s * sample_rate_hz), dtype=np.float32)
    return np.concatenate([trim(a, sample_rate_hz), gap, trim(b, sample_rate_hz)]
                          ).astype(np.float32)
