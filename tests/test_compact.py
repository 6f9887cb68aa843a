"""Compact model: config, feature extractor padding, forward/augment, save/load, pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    pipeline,
)

import intentd.daemon  # noqa: F401  (registration side effect under test)
from intentd.daemon.model import embedding
from intentd.daemon.model.compact import (
    CompactConfig,
    CompactFeatureExtractor,
    CompactForAudioClassification,
    register,
)

SR = 16000
LABELS = ("check_balance", "transfer_money", "cancel")


def _tone(n: int, freq: float = 300.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def _model(seed: int = 0) -> CompactForAudioClassification:
    torch.manual_seed(seed)
    return CompactForAudioClassification(CompactConfig(id2label=dict(enumerate(LABELS))))


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("compact")
    _model().save_pretrained(d)
    CompactFeatureExtractor().save_pretrained(d)
    return d


def test_config_defaults_and_label_maps() -> None:
    cfg = CompactConfig(id2label=dict(enumerate(LABELS)))
    assert cfg.model_type == "intentd-compact"
    assert cfg.input_view == "utterance"
    assert cfg.embedding_dim == 96
    assert cfg.num_labels == 3
    assert cfg.label2id == {"check_balance": 0, "transfer_money": 1, "cancel": 2}
    assert cfg.head_type == "keyword_cnn"
    assert cfg.kernel_sizes == [3, 5, 9]
    assert cfg.gru_hidden_size == 128
    assert cfg.attention_heads == 4
    with pytest.raises(ValueError, match="odd"):
        CompactConfig(conv_kernel_size=4)
    with pytest.raises(ValueError, match="odd"):
        CompactConfig(kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="at least one"):
        CompactConfig(kernel_sizes=())
    with pytest.raises(ValueError, match="head_type must be one of keyword_cnn, gru_attention"):
        CompactConfig(head_type="lstm")
    with pytest.raises(ValueError, match="attention_heads"):
        CompactConfig(attention_heads=0)
    with pytest.raises(ValueError, match="conv_stride"):
        CompactConfig(conv_stride=0)


def test_every_head_variant_is_padding_invariant() -> None:
    x = torch.randn(1, 7, 96)
    padded = torch.cat([x, torch.zeros(1, 5, 96)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    ids = dict(enumerate(LABELS))
    for cfg in (CompactConfig(id2label=ids),
                CompactConfig(id2label=ids, kernel_sizes=(1, 11)),
                CompactConfig(id2label=ids, conv_stride=2),
                CompactConfig(id2label=ids, kernel_sizes=(1, 11), conv_stride=3),
                CompactConfig(id2label=ids, subtract_utterance_mean=True),
                CompactConfig(id2label=ids, head_type="gru_attention"),
                CompactConfig(id2label=ids, head_type="gru_attention", gru_hidden_size=0,
                              attention_heads=1, num_conv_layers=3)):
        torch.manual_seed(0)
        model = CompactForAudioClassification(cfg).eval()
        with torch.inference_mode():
            alone = model(input_values=x).logits
            batch = model(input_values=padded, attention_mask=mask).logits
        torch.testing.assert_close(alone, batch, atol=1e-5, rtol=1e-5)


def test_subtracting_the_utterance_mean_ignores_a_constant_offset() -> None:
    """A voice or channel that shifts every frame's embedding by the same vector changes
    nothing once the utterance mean is subtracted; padded frames stay out of the mean."""
    ids = dict(enumerate(LABELS))
    torch.manual_seed(0)
    x = torch.randn(1, 7, 96)
    offset = torch.randn(1, 1, 96)
    padded = torch.cat([x + offset, torch.zeros(1, 5, 96)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    for on in (True, False):
        torch.manual_seed(0)
        model = CompactForAudioClassification(
            CompactConfig(id2label=ids, subtract_utterance_mean=on)).eval()
        with torch.inference_mode():
            base = model(input_values=x).logits
            shifted = model(input_values=padded, attention_mask=mask).logits
        assert torch.allclose(base, shifted, atol=1e-5) == on


def test_fit_builds_mean_subtracting_models_and_old_configs_load_without() -> None:
    from intentd.trainer.fitting.fit import ModelArguments, build_model

    model, _, _ = build_model(ModelArguments(model="compact"), LABELS)
    assert model.config.subtract_utterance_mean is True
    # saved before the option existed: the key is absent and the model behaves as trained
    old = CompactConfig.from_dict({"id2label": {"0": "a", "1": "b"}})
    assert old.subtract_utterance_mean is False
    assert "subtract_utterance_mean" in model.config.to_diff_dict()


def test_head_channels_default_and_override() -> None:
    from intentd.trainer.fitting.fit import ModelArguments, build_model

    def hidden(**kw: object) -> int:
        return build_model(ModelArguments(model="compact", **kw), LABELS)[0].config.hidden_size

    assert hidden() == 256  # Whisper tiny.en, the default front-end
    assert hidden(frontend="speech_embedding") == 256
    assert hidden(head_channels=128) == 128


def test_head_channels_out_of_range_is_a_one_line_error(tmp_path: Path) -> None:
    from intentd.daemon.errors import ConfigError
    from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit

    with pytest.raises(ConfigError, match=r"--head-channels must be in \[8, 2048\], got 4"):
        fit(DataArguments(data=str(tmp_path / "none")),
            ModelArguments(model="compact", head_channels=4),
            TrainArguments(out=str(tmp_path / "out")))


def test_param_count_is_small() -> None:
    n = sum(p.numel() for p in _model().parameters())
    assert 500_000 <= n <= 1_500_000  # ~4.6 MB of float32 weights
    gru = CompactForAudioClassification(
        CompactConfig(id2label=dict(enumerate(LABELS)), head_type="gru_attention",
                      hidden_size=192))
    assert 50_000 <= sum(p.numel() for p in gru.parameters()) <= 600_000


def test_feature_extractor_pads_and_masks() -> None:
    fe = CompactFeatureExtractor()
    clips = [_tone(16000), _tone(5000), _tone(30000)]
    out = fe(clips, sampling_rate=SR, return_tensors="np")
    lengths = [embedding.n_embeddings(c.size) for c in clips]  # [3, 1, 14]
    assert lengths == [3, 1, 14]
    assert out["input_values"].shape == (3, 14, 96)
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), lengths)
    np.testing.assert_array_equal(out["attention_mask"][1], [1] + [0] * 13)
    assert not out["input_values"][1, 1:].any()  # padding_value 0
    np.testing.assert_allclose(out["input_values"][0, :3], embedding.embed(clips[0]))


def test_feature_extractor_input_forms() -> None:
    fe = CompactFeatureExtractor()
    x = _tone(16000)
    single = fe(x, sampling_rate=SR, return_tensors="pt")
    assert single["input_values"].shape == (1, 3, 96)
    as_list = fe(x.tolist(), sampling_rate=SR, return_tensors="pt")
    torch.testing.assert_close(single["input_values"], as_list["input_values"])
    batch2d = fe(np.stack([x, x]), sampling_rate=SR, return_tensors="pt")
    assert batch2d["input_values"].shape == (2, 3, 96)


def test_feature_extractor_rejects_wrong_rate() -> None:
    with pytest.raises(ValueError, match="8000 Hz but this model needs 16000 Hz"):
        CompactFeatureExtractor()(_tone(8000), sampling_rate=8000)


def test_forward_masking_ignores_padding() -> None:
    model = _model().eval()
    fe = CompactFeatureExtractor()
    short, long = _tone(16000, 250), _tone(40000, 500)
    alone = fe(short, sampling_rate=SR, return_tensors="pt")
    batch = fe([short, long], sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        a = model(**alone).logits
        b = model(**batch).logits
    assert b.shape == (2, 3)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)


def test_training_forward_has_loss_and_augments() -> None:
    model = _model()
    x = torch.randn(4, 12, 96) * 10
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[2, 5:] = 0
    labels = torch.tensor([0, 1, 2, 0])
    model.train()
    out = model(input_values=x, attention_mask=mask, labels=labels)
    assert out.logits.shape == (4, 3)
    assert out.loss.ndim == 0 and out.loss.item() > 0
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    # Augmentation and dropout make training forwards random; eval is deterministic.
    torch.manual_seed(1)
    r1 = model(input_values=x, attention_mask=mask).logits
    torch.manual_seed(2)
    r2 = model(input_values=x, attention_mask=mask).logits
    assert not torch.allclose(r1, r2)
    model.eval()
    with torch.inference_mode():
        e1 = model(input_values=x, attention_mask=mask).logits
        e2 = model(input_values=x, attention_mask=mask).logits
    torch.testing.assert_close(e1, e2)
    with pytest.raises(ValueError, match=r"\[batch, frames, 96\]"):
        model(input_values=torch.zeros(2, 16000))


def test_register_is_idempotent() -> None:
    register()
    register()
    assert AutoConfig.for_model("intentd-compact").__class__ is CompactConfig


def test_save_and_auto_load_round_trip(saved_dir: Path) -> None:
    loaded = AutoModelForAudioClassification.from_pretrained(saved_dir)
    assert isinstance(loaded, CompactForAudioClassification)
    assert loaded.config.id2label == dict(enumerate(LABELS))
    assert isinstance(AutoFeatureExtractor.from_pretrained(saved_dir), CompactFeatureExtractor)
    original = _model().eval()
    x = torch.randn(2, 5, 96)
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded.eval()(input_values=x).logits, original(input_values=x).logits
        )


def test_pipeline_on_array_and_wav(saved_dir: Path, tmp_path: Path) -> None:
    clf = pipeline("audio-classification", model=str(saved_dir))
    result = clf(_tone(20000))
    assert len(result) == 3
    assert {r["label"] for r in result} == set(LABELS)
    assert abs(sum(r["score"] for r in result) - 1.0) < 1e-4
    if shutil.which("ffmpeg") is None:
        pytest.skip("transformers decodes audio file paths with ffmpeg, which is not installed")
    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(20000), SR, subtype="PCM_16")
    from_file = clf(str(wav))
    assert {r["label"] for r in from_file} == set(LABELS)
    # Same audio (up to 16-bit quantisation) -> same ranking.
    assert [r["label"] for r in from_file] == [r["label"] for r in result]


def test_keyword_pool_is_position_invariant_and_ignores_padding() -> None:
    from intentd.daemon.model.compact_layers import KeywordConvPool

    pool = KeywordConvPool(hidden=1, kernel_sizes=(1,), dropout=0.0).eval()
    with torch.no_grad():
        pool.convs[0].weight.fill_(1.0)  # identity detector: y = gelu(gelu(h))
        pool.convs[0].bias.fill_(0.0)

    def gelu(x: torch.Tensor) -> torch.Tensor:  # input activation, then the detector's
        return torch.nn.functional.gelu(torch.nn.functional.gelu(x))

    early = torch.tensor([[[3.0], [0.0], [0.0], [0.0]]])
    late = torch.tensor([[[0.0], [0.0], [3.0], [0.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    out_early, out_late = pool(early, mask), pool(late, mask)
    torch.testing.assert_close(out_early, out_late)  # where the pattern is does not matter
    torch.testing.assert_close(out_early, torch.stack([gelu(torch.tensor(3.0)),
                                                       gelu(torch.tensor(3.0)) / 4]).view(1, 2))
    # A padded frame holds zero, but with all valid frames negative it would still win a
    # plain max (0 > gelu(gelu(-1))); the mask keeps it out of both pools.
    neg = torch.tensor([[[-1.0], [-1.0], [0.0]]])
    padded = pool(neg, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(padded, gelu(torch.tensor([-1.0, -1.0])).view(1, 2))
