"""Speech-embedding front-end: shapes, padding, determinism, streaming == offline."""

from __future__ import annotations

import numpy as np
import pytest
from signals import speechlike

from intentd.daemon.model import embedding as E

SR = 16000


def test_counts_match_receptive_field() -> None:
    assert E.RECEPTIVE_FIELD_SAMPLES == 12512
    assert E.n_frames(511) == 0
    assert E.n_frames(512) == 1
    assert E.n_frames(16000) == 97
    assert E.n_embeddings(0) == 0
    assert E.n_embeddings(1) == 1
    assert E.n_embeddings(12512 + 1279) == 1
    assert E.n_embeddings(12512 + 1280) == 2
    assert E.n_embeddings(48000) == 28


@pytest.mark.parametrize("n", [100, 12511, 12512, 13792, 16000, 48000])
def test_embed_shape_dtype(n: int) -> None:
    e = E.embed(speechlike(n))
    assert e.shape == (E.n_embeddings(n), 96)
    assert e.dtype == np.float32
    assert np.isfinite(e).all()


def test_embed_deterministic_and_content_dependent() -> None:
    a = E.embed(speechlike(32000, seed=1))
    b = E.embed(speechlike(32000, seed=1))
    c = E.embed(np.zeros(32000, dtype=np.float32))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0


def test_short_clip_is_right_padded_with_zeros() -> None:
    x = speechlike(5000)
    padded = np.concatenate([x, np.zeros(E.RECEPTIVE_FIELD_SAMPLES - x.size, np.float32)])
    np.testing.assert_array_equal(E.embed(x), E.embed(padded))


def test_digital_silence_is_floored() -> None:
    mel = E.melspectrogram(np.zeros(2000, dtype=np.float32))
    assert mel.shape == (E.n_frames(2000), 32)
    np.testing.assert_allclose(mel, E.MEL_FLOOR_DB / 10 + 2)


def test_embed_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        E.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="mono 1-D"):
        E.embed(np.zeros((100, 2), dtype=np.float32))


def test_embed_many_equals_embed() -> None:
    clips = [speechlike(n, seed=n) for n in (40000, 3000, 20000, 12512)]
    many = E.embed_many(clips)
    assert [m.shape[0] for m in many] == [E.n_embeddings(c.size) for c in clips]
    for clip, m in zip(clips, many, strict=True):
        np.testing.assert_array_equal(m, E.embed(clip))
    assert E.embed_many([]) == []


@pytest.mark.parametrize("frames", [76, 83, 84, 160, 400, 1203])
def test_sequence_model_equals_separate_windows(frames: int) -> None:
    """The rewritten fully-convolutional model gives what the shipped one gives per window."""
    mel = E.melspectrogram(speechlike(E.FRAME_SAMPLES + (frames - 1) * E.FRAME_HOP_SAMPLES,
                                   seed=frames))
    assert mel.shape[0] == frames
    count = E.n_window_embeddings(frames)
    assert count == (frames - 76) // 8 + 1
    windows = np.stack([mel[8 * t : 8 * t + 76] for t in range(count)])
    # Bit-identical on the CPU provider; the tolerance only allows for other kernels.
    np.testing.assert_allclose(E.embed_frames(mel), E.embed_windows(windows), rtol=0,
                               atol=1e-4)


def test_unexpected_embedding_graph_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from intentd.daemon.errors import DataError

    mel_model = E.resource_path("melspectrogram.onnx")
    monkeypatch.setattr(E, "resource_path", lambda name: mel_model)
    E._sequence_model.cache_clear()
    try:
        with pytest.raises(DataError, match="not the expected speech-embedding graph"):
            E._sequence_model()
    finally:
        E._sequence_model.cache_clear()


def test_embed_frames_below_one_window_is_empty() -> None:
    assert E.n_window_embeddings(75) == 0
    assert E.embed_frames(np.zeros((75, 32), np.float32)).shape == (0, 96)
    assert E.embed_windows(np.zeros((0, 76, 32), np.float32)).shape == (0, 96)


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 1), (2, 1), (0, 5), (1, 12)])
def test_streaming_equals_offline(seed: int, batch: int) -> None:
    rng = np.random.default_rng(seed)
    x = speechlike(40000 + 317 * seed, seed=seed)
    offline = E.embed(x)
    streamer = E.StreamingEmbedder(batch_embeddings=batch)
    outs, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 4000))
        outs.append(streamer.push(x[i : i + n]))
        i += n
    outs.append(streamer.finish())
    streamed = np.concatenate(outs)
    assert streamed.shape == offline.shape
    assert streamer.n_embeddings == offline.shape[0]
    # The mel model rounds differently over different chunk lengths (~1e-5 on values ~10).
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-3)


def test_streaming_emits_as_soon_as_receptive_field_is_complete() -> None:
    x = speechlike(E.RECEPTIVE_FIELD_SAMPLES + E.EMBEDDING_HOP_SAMPLES)
    s = E.StreamingEmbedder()
    assert s.push(x[: E.RECEPTIVE_FIELD_SAMPLES - 1]).shape == (0, 96)
    assert s.push(x[E.RECEPTIVE_FIELD_SAMPLES - 1 : E.RECEPTIVE_FIELD_SAMPLES]).shape == (1, 96)
    assert s.push(x[E.RECEPTIVE_FIELD_SAMPLES :]).shape == (1, 96)
    assert s.finish().shape == (0, 96)


def test_streaming_batches_hold_back_until_full() -> None:
    hop, field = E.EMBEDDING_HOP_SAMPLES, E.RECEPTIVE_FIELD_SAMPLES
    x = speechlike(field + 7 * hop)  # 8 complete embeddings
    s = E.StreamingEmbedder(batch_embeddings=3)
    assert s.push(x[: field + hop]).shape == (0, 96)  # 2 complete, held back
    assert s.push(x[field + hop : field + 2 * hop]).shape == (3, 96)
    assert s.push(x[field + 2 * hop : field + 4 * hop]).shape == (0, 96)
    assert s.push(x[field + 4 * hop :]).shape == (5, 96)
    assert s.n_embeddings == 8
    assert s.finish().shape == (0, 96)
    held = E.StreamingEmbedder(batch_embeddings=3)
    assert held.push(x[: field + hop]).shape == (0, 96)
    np.testing.assert_allclose(held.finish(), E.embed(x[: field + hop]), rtol=0, atol=1e-3)
    assert held.finish().shape == (0, 96)  # returned once
    with pytest.raises(ValueError, match="batch_embeddings"):
        E.StreamingEmbedder(batch_embeddings=0)


def test_streaming_short_clip_finish_matches_embed() -> None:
    x = speechlike(7000)
    s = E.StreamingEmbedder()
    assert s.push(x[:3000]).shape == (0, 96)
    assert s.push(x[3000:]).shape == (0, 96)
    np.testing.assert_array_equal(s.finish(), E.embed(x))
    assert E.StreamingEmbedder().finish().shape == (0, 96)
