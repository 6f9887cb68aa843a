"""Crowd noise: evaluation babble is never heard in training, each clip is its own mix, and
the café murmur sets its own level."""

from __future__ import annotations

import numpy as np
import pytest

from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis import crowd
from intentd.trainer.synthesis.signals import max_frame_energy


def test_crowd_pools_use_disjoint_voices_and_tracks() -> None:
    train_voices = {s.voice_name for s in crowd.pool_speakers("train")}
    eval_voices = {s.voice_name for s in crowd.pool_speakers("eval")}
    assert train_voices and eval_voices and not train_voices & eval_voices
    train, held = crowd.talker_pool("train"), crowd.talker_pool("eval")
    assert len(train) == len(held) == 16
    assert all(t.size == 20 * 16000 for t in (*train, *held))
    assert not any(np.array_equal(a, b) for a in train for b in held)


def test_babble_noise_is_seeded_unit_rms_and_pool_specific() -> None:
    a = crowd.babble_noise(16000, np.random.default_rng(1))
    b = crowd.babble_noise(16000, np.random.default_rng(1))
    c = crowd.babble_noise(16000, np.random.default_rng(2))
    d = crowd.babble_noise(16000, np.random.default_rng(1), pool="eval")
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
    tracks = crowd.talker_pool("train")
    one = crowd.babble_noise(8000, np.random.default_rng(5), talkers=1)
    # One talker: a scaled window of exactly one pool track.
    assert sorted(round(_best_match(one, t), 3) for t in tracks)[-1] == pytest.approx(1.0)
    three = crowd.babble_noise(8000, np.random.default_rng(5), talkers=3)
    # Three talkers: no single track explains the mix.
    assert max(_best_match(three, t) for t in tracks) < 0.95
    with pytest.raises(ValueError, match=r"talkers must be in 1\.\.16"):
        crowd.babble_noise(100, np.random.default_rng(0), talkers=17)
    with pytest.raises(ValueError, match="unknown crowd pool"):
        crowd.babble_noise(100, np.random.default_rng(0), pool="test")


def test_cafe_is_a_murmur_bed_plus_capped_clatter_and_rumble() -> None:
    n = 3 * 16000
    a = aug.make_noise("cafe", n, np.random.default_rng(4), crowd_pool="eval")
    assert a.dtype == np.float32 and a.shape == (n,)
    assert np.sqrt(np.mean(np.square(a, dtype=np.float64))) == pytest.approx(1.0, rel=1e-4)
    assert not np.array_equal(a, crowd.cafe_noise(n, np.random.default_rng(4)))  # train pool
    # Replay the draws: a crop of one murmur bed, clatter whose loudest 20 ms frame is
    # 0.3-0.9x the bed's (amplitude), brown rumble at 0.15.
    rng = np.random.default_rng(4)
    beds = crowd._cafe_beds("eval", 16000)
    assert len(beds) == 4 and all(b.size == 20 * 16000 for b in beds)
    bed = aug.fit_length(beds[int(rng.integers(len(beds)))], n, rng)
    clatter = crowd._clatter(n, rng, 16000)
    assert max_frame_energy(clatter) > 0  # this seed has clatter
    gain = np.sqrt(max_frame_energy(bed) / max_frame_energy(clatter))
    clatter = clatter * np.float32(gain * rng.uniform(0.3, 0.9))
    rumble = np.float32(0.15) * aug.brown_noise(n, rng)
    np.testing.assert_allclose(a, aug._unit_rms(bed + clatter + rumble), atol=1e-6)
    ratio = max_frame_energy(clatter) / max_frame_energy(bed)
    assert 0.3**2 <= ratio <= 0.9**2


def test_cafe_is_for_evaluation_only_by_default() -> None:
    assert "cafe" in aug.NOISE_KINDS
    assert "cafe" not in aug.AugmentOptions().noise_kinds


def test_a_larger_pool_holds_more_voices_and_keeps_the_murmur_at_16() -> None:
    small, large = crowd.talker_pool("train"), crowd.talker_pool("train", 16000, 24)
    assert len(large) == 24 and all(t.size == 20 * 16000 for t in large)
    assert len({t.tobytes() for t in large}) == 24
    held = crowd.talker_pool("eval")
    assert not any(np.array_equal(a, b) for a in large for b in held)
    # Babble from the larger pool mixes its tracks: one talker is a window of one of them.
    one = crowd.babble_noise(8000, np.random.default_rng(5), talkers=1, pool_talkers=24)
    assert max(_best_match(one, t) for t in large) == pytest.approx(1.0, abs=1e-3)
    # Café beds of a larger pool: 16 talkers each (its every voice would be a steadier
    # noise), a different choice per bed; as many beds per 16 talkers as the standard pool.
    beds = crowd._cafe_beds("train", 16000, 24)
    assert len(beds) == len(crowd._cafe_beds("train", 16000)) == 4
    assert len({b.tobytes() for b in beds}) == 4
    assert crowd.cafe_noise(16000, np.random.default_rng(1), pool_talkers=24).shape == (16000,)
    assert len(small) == 16
    for bad in (5, 229):
        with pytest.raises(ValueError, match=r"a crowd pool holds 6\.\.228 talkers"):
            crowd.talker_pool("train", 16000, bad)
