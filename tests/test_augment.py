"""Babble pools: evaluation babble is never heard in training, and each clip is its own mix."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import augment as aug


def test_babble_pools_use_disjoint_voices_and_tracks() -> None:
    train_voices = {s.voice_name for s in aug.pool_speakers("train")}
    eval_voices = {s.voice_name for s in aug.pool_speakers("eval")}
    assert train_voices and eval_voices and not train_voices & eval_voices
    train, held = aug.talker_pool("train"), aug.talker_pool("eval")
    assert len(train) == len(held) == 16
    assert all(t.size == 20 * 16000 for t in (*train, *held))
    assert not any(np.array_equal(a, b) for a in train for b in held)


def test_babble_noise_is_seeded_unit_rms_and_pool_specific() -> None:
    a = aug.babble_noise(16000, np.random.default_rng(1))
    b = aug.babble_noise(16000, np.random.default_rng(1))
    c = aug.babble_noise(16000, np.random.default_rng(2))
    d = aug.babble_noise(16000, np.random.default_rng(1), pool="eval")
    assert a.dtype == np.float32 and a.shape == (16000,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert np.sqrt(np.mean(np.square(a, dtype=np.float64))) == pytest.approx(1.0, rel=1e-4)


def _best_match(clip: np.ndarray, track: np.ndarray) -> float:
    """Highest normalized correlation of ``clip`` with any same-length window of ``track``."""
    n = clip.size
    nfft = 1 << (track.size + n).bit_length()
    corr = np.fft.irfft(np.fft.rfft(track, nfft) * np.conj(np.fft.rfft(clip, nfft)), nfft)
    corr = corr[: track.size - n + 1]
    cum = np.concatenate([[0.0], np.cumsum(np.square(track, dtype=np.float64))])
    energy = cum[n:] - cum[:-n]
    return float(np.max(corr / np.sqrt(np.maximum(energy, 1e-12) * np.dot(clip, clip))))


def test_babble_noise_mixes_the_requested_number_of_talkers() -> None:
    tracks = aug.talker_pool("train")
    one = aug.babble_noise(8000, np.random.default_rng(5), talkers=1)
    # One talker: a scaled window of exactly one pool track.
    assert sorted(round(_best_match(one, t), 3) for t in tracks)[-1] == pytest.approx(1.0)
    three = aug.babble_noise(8000, np.random.default_rng(5), talkers=3)
    # Three talkers: no single track explains the mix.
    assert max(_best_match(three, t) for t in tracks) < 0.95
    with pytest.raises(ValueError, match=r"talkers must be in 1\.\.16"):
        aug.babble_noise(100, np.random.default_rng(0), talkers=17)
    with pytest.raises(ValueError, match="unknown babble pool"):
        aug.babble_noise(100, np.random.default_rng(0), pool="test")
