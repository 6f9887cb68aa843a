"""load_backend on a compact dir and on a tiny wav2vec2 dir; error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

from intentd.daemon.audio.windowing import WindowSpec, cut_windows
from intentd.daemon.errors import DataError
from intentd.daemon.model import frontends
from intentd.daemon.model.backend import ModelBackend, UtteranceScorer
from intentd.daemon.model.compact import (
    CompactConfig,
    CompactFeatureExtractor,
    CompactForAudioClassification,
)
from intentd.daemon.model.loader import CompactBackend, HFBackend, load_backend

SR = 16000
LABELS = ("lights_on", "lights_off", "weather")


def _speechy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    am = 1 + np.sin(2 * np.pi * 4 * t)
    return (0.2 * am * np.sin(2 * np.pi * 180 * t) + 0.03 * rng.standard_normal(n)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def compact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models") / "banking"
    torch.manual_seed(0)
    CompactForAudioClassification(CompactConfig(id2label=dict(enumerate(LABELS)))).save_pretrained(d)
    CompactFeatureExtractor().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models") / "tiny-w2v"
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(32, 32, 32), conv_kernel=(8, 8, 8), conv_stride=(4, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
        num_labels=3, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor().save_pretrained(d)
    return d


def _check_backend(backend: ModelBackend, name: str) -> None:
    assert isinstance(backend, ModelBackend)
    assert backend.name == name
    assert backend.labels == LABELS
    assert backend.sample_rate_hz == SR
    windows = cut_windows(_speechy(40000), WindowSpec())
    assert windows.shape == (4, 16000)
    probs = backend.classify_windows(windows)
    assert probs.shape == (4, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert backend.classify_windows(np.zeros((0, 16000), np.float32)).shape == (0, 3)
    # A window classified alone gets the same probabilities as inside a batch.
    np.testing.assert_allclose(backend.classify_windows(windows[1:2])[0], probs[1], atol=1e-5)

    scorer = backend.utterance_scorer()
    assert isinstance(scorer, UtteranceScorer)
    audio = _speechy(30000, seed=3)
    for s in range(0, audio.size, 480):
        scorer.push(audio[s : s + 480])
    verdict = scorer.result()
    assert verdict.shape == (3,)
    assert abs(float(verdict.sum()) - 1.0) < 1e-5


def test_compact_backend(compact_dir: Path) -> None:
    backend = load_backend(compact_dir, threads=1)
    assert isinstance(backend, CompactBackend)
    _check_backend(backend, "banking")


def test_compact_utterance_verdict_matches_offline(compact_dir: Path) -> None:
    backend = load_backend(str(compact_dir))
    assert isinstance(backend, CompactBackend)
    # Long (embeddings streamed in batches, some held back to the end), exactly one batch,
    # and shorter than one embedding's receptive field.
    for n in (30000, 12512 + 11 * 1280, 6000):
        audio = _speechy(n, seed=n)
        scorer = backend.utterance_scorer()
        for s in range(0, audio.size, 777):
            scorer.push(audio[s : s + 777])
        offline = backend.classify_embeddings(
            frontends.embed_many(backend.frontend, [audio]))[0]
        verdict = scorer.result()
        np.testing.assert_allclose(verdict, offline, atol=1e-4)
        np.testing.assert_array_equal(scorer.result(), verdict)  # asking twice changes nothing


def test_hf_backend_wav2vec2(w2v_dir: Path) -> None:
    backend = load_backend(w2v_dir, threads=1)
    assert isinstance(backend, HFBackend)
    _check_backend(backend, "tiny-w2v")
    audio = _speechy(20000, seed=5)
    scorer = backend.utterance_scorer()
    scorer.push(audio[:7000])
    scorer.push(audio[7000:])
    np.testing.assert_allclose(scorer.result(), backend.classify_batch([audio])[0], atol=1e-6)


def test_result_without_audio_is_an_error(compact_dir: Path) -> None:
    with pytest.raises(ValueError, match="before any audio"):
        load_backend(compact_dir).utterance_scorer().result()


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"model dir .*nope does not exist"):
        load_backend(tmp_path / "nope")


def test_file_instead_of_dir(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="is not a directory"):
        load_backend(f)


def test_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no config\.json"):
        load_backend(tmp_path)


def test_corrupt_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read it as JSON"):
        load_backend(tmp_path)


def test_config_without_weights(tmp_path: Path, compact_dir: Path) -> None:
    (tmp_path / "config.json").write_text((compact_dir / "config.json").read_text())
    with pytest.raises(DataError, match=r"no model\.safetensors \(the head's weights\)"):
        load_backend(tmp_path)


def test_corrupt_weights(tmp_path: Path, compact_dir: Path) -> None:
    (tmp_path / "config.json").write_text((compact_dir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read it as safetensors"):
        load_backend(tmp_path)


def test_hf_dir_without_feature_extractor(tmp_path: Path, w2v_dir: Path) -> None:
    (tmp_path / "config.json").write_text((w2v_dir / "config.json").read_text())
    with pytest.raises(DataError, match=r"no preprocessor_config\.json"):
        load_backend(tmp_path)
