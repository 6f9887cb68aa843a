"""The shared windowing rule: exact bounds, padding, end-aligned tail, streaming twin."""

from __future__ import annotations

import numpy as np
import pytest

from intentd.daemon.audio.windowing import (
    WindowCutter,
    WindowSpec,
    cut_windows,
    preprocess,
    to_mono_float,
    window_bounds,
)

TINY = WindowSpec(window_s=0.004, hop_s=0.002, sample_rate_hz=1000)  # 4-sample windows, hop 2


def test_spec_sample_counts_and_validation():
    assert (WindowSpec().window_samples, WindowSpec().hop_samples) == (16000, 8000)
    assert (TINY.window_samples, TINY.hop_samples) == (4, 2)
    for bad in ({"window_s": 0}, {"hop_s": 0}, {"hop_s": 2.0}, {"sample_rate_hz": 0}):
        with pytest.raises(ValueError):
            WindowSpec(**bad)


@pytest.mark.parametrize(
    ("n", "bounds"),
    [
        (0, []),
        (1, [(0, 4)]),
        (4, [(0, 4)]),
        (5, [(0, 4), (1, 5)]),
        (6, [(0, 4), (2, 6)]),
        (7, [(0, 4), (2, 6), (3, 7)]),
        (8, [(0, 4), (2, 6), (4, 8)]),
        (9, [(0, 4), (2, 6), (4, 8), (5, 9)]),
    ],
)
def test_window_bounds_tiny(n: int, bounds: list):
    assert window_bounds(n, TINY) == bounds


def test_window_bounds_default_spec():
    spec = WindowSpec()
    assert window_bounds(16000, spec) == [(0, 16000)]
    assert window_bounds(24000, spec) == [(0, 16000), (8000, 24000)]
    assert window_bounds(30000, spec) == [(0, 16000), (8000, 24000), (14000, 30000)]
    assert window_bounds(32000, spec) == [(0, 16000), (8000, 24000), (16000, 32000)]


def test_cut_windows_pads_short_and_aligns_tail():
    a = np.arange(1, 8, dtype=np.float32)  # 7 samples
    np.testing.assert_array_equal(
        cut_windows(a, TINY), [[1, 2, 3, 4], [3, 4, 5, 6], [4, 5, 6, 7]]
    )
    np.testing.assert_array_equal(cut_windows(a[:3], TINY), [[1, 2, 3, 0]])
    assert cut_windows(a[:0], TINY).shape == (0, 4)
    assert cut_windows(a, TINY).dtype == np.float32
    with pytest.raises(ValueError):
        cut_windows(np.zeros((4, 2), np.float32), TINY)


def stream(spec: WindowSpec, a: np.ndarray, rng: np.random.Generator) -> list:
    cutter, out, i = WindowCutter(spec), [], 0
    while i < a.size:
        n = int(rng.integers(0, 3 * spec.window_samples // 2 + 2))  # 0-length pushes too
        out += cutter.push(a[i : i + n])
        i += n
    out += cutter.finish()
    assert cutter.n_samples == a.size
    assert cutter.windows_emitted == len(out)
    return out


@pytest.mark.parametrize(
    "spec", [TINY, WindowSpec(0.005, 0.005, 1000), WindowSpec(0.007, 0.003, 1000)]
)
def test_window_cutter_equals_cut_windows_random_blocks(spec: WindowSpec):
    rng = np.random.default_rng(0)
    for n in [*range(0, 30), 57, 100, 101]:
        a = rng.standard_normal(n).astype(np.float32)
        got = stream(spec, a, rng)
        assert [s for s, _ in got] == [s for s, _ in window_bounds(n, spec)]
        ref = cut_windows(a, spec)
        if got:
            np.testing.assert_array_equal(np.stack([w for _, w in got]), ref)
        else:
            assert ref.shape[0] == 0


def test_window_cutter_default_spec_one_second_utterance_blocks():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(16000 * 3 + 4321).astype(np.float32)
    got = stream(WindowSpec(), a, rng)
    np.testing.assert_array_equal(np.stack([w for _, w in got]), cut_windows(a, WindowSpec()))
    assert [s for s, _ in got] == [0, 8000, 16000, 24000, 32000, 36321]


def test_window_cutter_finish_on_empty_utterance():
    assert WindowCutter(TINY).finish() == []


@pytest.mark.parametrize("n", [3, 7])
def test_window_cutter_finish_twice_is_empty(n: int):
    c = WindowCutter(TINY)
    c.push(np.ones(n, np.float32))
    assert len(c.finish()) == 1
    assert c.finish() == []


def test_to_mono_float_scaling_and_downmix():
    np.testing.assert_array_equal(
        to_mono_float(np.array([-32768, 16384], np.int16)), np.array([-1.0, 0.5], np.float32)
    )
    np.testing.assert_array_equal(
        to_mono_float(np.array([[0.5, -0.5], [1.0, 0.0]], np.float32)), [0.0, 0.5]
    )
    np.testing.assert_array_equal(to_mono_float(np.array([0, 128, 192], np.uint8)), [-1, 0, 0.5])
    with pytest.raises(ValueError):
        to_mono_float(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_preprocess_lengths_and_downmix(rate: int):
    rng = np.random.default_rng(rate)
    st = (rng.standard_normal((rate + 13, 2)) * 0.2).astype(np.float32)
    out = preprocess(st, rate, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - round((rate + 13) * 16000 / rate)) <= 1
    np.testing.assert_array_equal(out, preprocess(st.mean(axis=1, dtype=np.float32), rate, 16000))


def test_preprocess_identity_and_empty():
    a = np.array([[0.25, 0.75]], np.float32)
    np.testing.assert_array_equal(preprocess(a, 16000, 16000), [0.5])
    assert preprocess(np.zeros(0, np.float32), 44100, 16000).size == 0
