"""StreamResampler: streaming output equals one-shot soxr; downmix is exact."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from intentd.daemon.audio.resample import QUALITY, StreamResampler


def stream_all(rs: StreamResampler, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out, i = [], 0
    while i < x.shape[0]:
        n = int(rng.integers(1, 5000))
        out.append(rs.process(x[i : i + n]))
        i += n
    out.append(rs.flush())
    assert all(o.dtype == np.float32 and o.ndim == 1 for o in out)
    return np.concatenate(out)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_streaming_equals_one_shot(rate: int):
    rng = np.random.default_rng(rate)
    t = np.arange(rate * 2 + 37) / rate
    x = (0.4 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
    got = stream_all(StreamResampler(rate, 16000, 1), x, rng)
    ref = x if rate == 16000 else soxr.resample(x, rate, 16000, quality=QUALITY)
    assert abs(got.size - ref.size) <= 1
    n = min(got.size, ref.size)
    np.testing.assert_allclose(got[:n], ref[:n], atol=1e-6, rtol=0)
    assert abs(got.size - round(x.size * 16000 / rate)) <= 1


def test_identity_fast_path_returns_input_and_empty_tail():
    rs = StreamResampler(16000, 16000, 1)
    assert rs.identity
    x = np.arange(10, dtype=np.float32) / 10
    y = rs.process(x)
    np.testing.assert_array_equal(y, x)
    y[0] = 5.0
    assert x[0] == 0.0  # the caller's buffer is not aliased
    assert rs.flush().size == 0


def test_downmix_is_exact_mean_of_channels():
    rng = np.random.default_rng(0)
    st = (rng.standard_normal((4801, 2)) * 0.3).astype(np.float32)
    mono = st.mean(axis=1, dtype=np.float32)
    a = StreamResampler(48000, 16000, 2)
    b = StreamResampler(48000, 16000, 1)
    np.testing.assert_array_equal(
        np.concatenate([a.process(st), a.flush()]), np.concatenate([b.process(mono), b.flush()])
    )
    same = StreamResampler(16000, 16000, 2)
    np.testing.assert_array_equal(same.process(st), mono)


def test_int16_input_is_scaled_like_float():
    rng = np.random.default_rng(1)
    i16 = rng.integers(-32768, 32767, size=(3000, 2), dtype=np.int16)
    f32 = i16.astype(np.float32) / 32768.0
    a, b = StreamResampler(44100, 16000, 2), StreamResampler(44100, 16000, 2)
    np.testing.assert_array_equal(
        np.concatenate([a.process(i16), a.flush()]), np.concatenate([b.process(f32), b.flush()])
    )
    np.testing.assert_array_equal(
        StreamResampler(16000, 16000, 1).process(np.array([-32768, 0, 16384], np.int16)),
        np.array([-1.0, 0.0, 0.5], np.float32),
    )


def test_wrong_channel_count_and_rates_rejected():
    with pytest.raises(ValueError, match="2 channels"):
        StreamResampler(48000, 16000, 2).process(np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError):
        StreamResampler(0, 16000, 1)
