"""Mid-command pauses for demo calls (trainer.pauses)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from trainer import pauses

SR = 16000


def _fake_speak(text: str) -> np.ndarray:
    """160 silent samples, 100 per letter of audible signal, 80 silent samples."""
    voiced = np.full(100 * len(text.replace(" ", "")), 0.5, dtype=np.float32)
    return np.concatenate([np.zeros(160, np.float32), voiced, np.zeros(80, np.float32)])


def test_speech_bounds_and_trim_are_frame_exact() -> None:
    x = np.zeros(SR, np.float32)
    x[1600:4800] = 0.3  # frames 10..29 (10 ms frames)
    assert pauses.speech_bounds(x, SR) == (1600, 4800)
    assert pauses.trim(x, SR).size == 3200
    assert pauses.speech_bounds(np.zeros(SR, np.float32), SR) == (0, 0)


def test_speak_with_pause_joins_the_audible_parts() -> None:
    out = pauses.speak_with_pause("ab cd ef gh", 2, 0.5, _fake_speak, SR)
    # Each half: 160 silent samples, 400 audible, 80 silent. speech_bounds works in whole
    # 10 ms frames (160 samples): frames 1-3, so the trim keeps 400 audible + 80 silent.
    half = np.concatenate([np.full(400, 0.5, np.float32), np.zeros(80, np.float32)])
    np.testing.assert_array_equal(out, np.concatenate([half, np.zeros(8000, np.float32),
                                                       half]))


def test_speak_with_pause_rejects_a_split_outside_the_text() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pauses.speak_with_pause("one two", 2, 0.5, _fake_speak, SR)


def test_split_at_leaves_two_words_each_side() -> None:
    rng = random.Random(0)
    assert pauses.split_at("turn it on", rng) == 0
    ks = {pauses.split_at("a b c d e f", rng) for _ in range(200)}
    assert ks == {2, 3, 4}
