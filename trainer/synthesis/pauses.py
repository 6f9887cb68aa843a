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


def cut_point(audio: np.ndarray, rng: random.Random, sample_rate_hz: int = 16000) -> int:
    """A sample index between words, at random: one of the quiet dips (local minima of 20 ms
    frame energy, in the quietest third) between 20% and 80% of ``audio``; the quietest
    frame there when it has none."""
    frame = sample_rate_hz // 50
    m = audio.size // frame
    if m < 5:
        return audio.size // 2
    e = np.sum(np.square(audio[: m * frame].reshape(m, frame), dtype=np.float64), axis=1)
    lo, hi = max(1, m // 5), min(m - 1, (4 * m) // 5)
    quiet = np.quantile(e[lo:hi], 1 / 3)
    dips = [k for k in range(lo, hi) if e[k] <= quiet and e[k] <= e[k - 1]
            and e[k] <= e[k + 1]]
    k = rng.choice(dips) if dips else lo + int(np.argmin(e[lo:hi]))
    return k * frame + frame // 2


def cut(audio: np.ndarray, part: str, rng: random.Random,
        sample_rate_hz: int = 16000) -> np.ndarray:
    """The ``head`` or ``tail`` of a command's audible part, cut between two words
    (:func:`cut_point`): what a speaker who pauses mid-command leaves on either side."""
    if part not in ("head", "tail"):
        raise ValueError(f"part must be head or tail, got {part!r}")
    s, e = speech_bounds(audio, sample_rate_hz)
    at = s + cut_point(audio[s:e], rng, sample_rate_hz)
    return audio[s:at] if part == "head" else audio[at:e]
