"""Whisper's encoder in torch (intentd.trainer.tuning.whisper_torch) and its tuning
(intentd.trainer.tuning.tune_encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from signals import speechlike

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model import compact, frontends
from intentd.daemon.model import frontend_whisper as W
from intentd.daemon.model.loader import load_backend
from intentd.trainer.synthesis import augment as aug
from intentd.trainer.tuning import whisper_torch as WT
from intentd.trainer.tuning.heldout import fit_split
from intentd.trainer.tuning.tune_encoder import TuneOptions, _noisy_copy, crowd_beds, tune

SR = 16000


def _torch_embed(enc: WT.WhisperEncoder, audio: np.ndarray) -> np.ndarray:
    mel = W.even_frames(W.log_mel(audio))
    with torch.no_grad():
        states = enc(torch.from_numpy(mel)[None])[0]
    return WT.pool(states, states.shape[0]).numpy()


def test_torch_encoder_matches_ctranslate2() -> None:
    enc = WT.load_encoder(W.model_dir()).eval()
    assert len(enc.layers) == 4 and enc.positions.shape == (1500, 384)
    x = speechlike(2 * SR + 480, seed=3)
    ours, theirs = _torch_embed(enc, x), W.embed(x)
    assert ours.shape == theirs.shape == (25, 384)
    # CTranslate2 runs int8 weights: close, not equal.
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99


@pytest.mark.parametrize(("first", "stem"), [(2, False), (0, True)])
def test_batched_tuning_pass_matches_one_clip_alone(first: int, stem: bool) -> None:
    """Padding a batch changes nothing for its clips: what each one gets equals what it gets
    alone, as the daemon encodes it (with the stem tuned too, its conv padding included)."""
    enc = WT.load_encoder(W.model_dir()).eval()
    split = WT.SplitEncoder(enc, first, stem=stem)
    clips = [speechlike(n, seed=i) for i, n in enumerate((SR + 320, 2 * SR + 960, SR // 2))]
    cached = [split.lower(c) for c in clips]
    with torch.no_grad():
        together, mask = split.upper(cached)
        for i, c in enumerate(cached):
            alone, _ = split.upper([c])
            n = int(mask[i].sum())
            assert n == alone.shape[1]
            np.testing.assert_allclose(together[i, :n].numpy(), alone[0].numpy(), atol=2e-3)
            # and the torch pass is the encoder's own (all layers from the stem):
            np.testing.assert_allclose(alone[0].numpy(), _torch_embed(enc, clips[i]),
                                       atol=3e-2)


def test_save_encoder_round_trip(tmp_path: Path) -> None:
    enc = WT.load_encoder(W.model_dir())
    with torch.no_grad():
        enc.layers[3].fc2.bias += 0.25
    WT.save_encoder(enc, W.model_dir(), tmp_path / "w")
    stock = (W.model_dir() / "model.bin").read_bytes()
    tuned = (tmp_path / "w" / "model.bin").read_bytes()
    assert len(tuned) == len(stock) and tuned != stock
    # Only the changed array differs; the decoder and every other array are byte-identical.
    changed = [n for n, _, _, off, nb in WT._variables(stock)
               if stock[off : off + nb] != tuned[off : off + nb]]
    assert changed == ["encoder/layer_3/ffn/linear_1/bias"]
    back = WT.load_encoder(tmp_path / "w")
    torch.testing.assert_close(back.layers[3].fc2.bias, enc.layers[3].fc2.bias,
                               atol=1e-3, rtol=1e-3)  # stored as float16
    for f in ("config.json", "tokenizer.json"):
        assert (tmp_path / "w" / f).read_bytes() == (W.model_dir() / f).read_bytes()
    # CTranslate2 loads the tuned dir, and it changes the embeddings.
    x = speechlike(SR, seed=1)
    assert not np.allclose(W.embed(x, weights=tmp_path / "w"), W.embed(x))
    assert frontends.version(frontends.WHISPER_TINY_EN, tmp_path / "w") != frontends.version(
        frontends.WHISPER_TINY_EN)


def test_read_encoder_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match=r"not a readable CTranslate2 model\.bin"):
        WT.read_encoder(bad)


def test_weights_only_for_whisper(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tunable weights"):
        frontends.embed_many(frontends.SPEECH_EMBEDDING, [speechlike(SR)], weights=tmp_path)
    for bad in ("", "../w", "a/b"):
        with pytest.raises(ValueError, match="frontend_weights"):
            compact.CompactConfig(frontend=frontends.WHISPER_TINY_EN, frontend_weights=bad)
    with pytest.raises(ValueError, match="frontend_weights"):
        compact.CompactConfig(frontend=frontends.SPEECH_EMBEDDING, frontend_weights="whisper")


def test_tune_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"--layers must be in \[1, 4\]"):
        TuneOptions(layers=5).validate(4)
    with pytest.raises(ConfigError, match="--layers must be in"):
        TuneOptions(layers=0).validate()
    TuneOptions(layers=6).validate()  # a deeper encoder (INTENTD_WHISPER_DIR) may allow it
    with pytest.raises(ConfigError, match="--epochs must be >= 1"):
        TuneOptions(epochs=0).validate(4)
    with pytest.raises(ConfigError, match="--encoder-lr"):
        TuneOptions(encoder_lr=0.0).validate(4)
    with pytest.raises(ConfigError, match="--tune-stem needs every layer tuned"):
        TuneOptions(tune_stem=True, layers=3).validate(4)
    TuneOptions(tune_stem=True, layers=4).validate(4)
    with pytest.raises(ConfigError, match=r"--context-s must be in \[0, 5\]"):
        TuneOptions(context_s=-0.1).validate(4)


def _one_bed_each() -> dict[str, list[np.ndarray]]:
    """One 8 s bed of Gaussian noise per crowd kind: copies without the cost of a crowd."""
    return {k: [np.random.default_rng(1).normal(0, 0.1, 8 * SR).astype(np.float32)]
            for k in ("babble", "cafe")}


def test_noisy_copies_carry_noise_beyond_the_words() -> None:
    """A noisy copy is the utterance padded by 0..context_s per side (drawn per copy), with
    noise over all of it; context_s 0 keeps its length."""
    audio = speechlike(SR, seed=3).astype(np.float32)
    beds = _one_bed_each()
    lengths = []
    for seed in range(20):
        copy, quiet = _noisy_copy(audio, np.random.default_rng(seed), beds,
                                  TuneOptions(context_s=0.5, pause_prob=0.0))
        assert audio.size <= copy.size <= audio.size + SR
        # The teacher's input: the same layout without the noise, the words where they are.
        assert quiet.size == copy.size
        lead = int(np.flatnonzero(quiet)[0]) - int(np.flatnonzero(audio)[0])
        np.testing.assert_array_equal(quiet[lead : lead + audio.size], audio)
        assert not quiet[:lead].any() and not quiet[lead + audio.size :].any()
        lengths.append(copy.size)
        assert np.max(np.abs(copy)) <= 0.98 + 1e-6
    assert len(set(lengths)) > 10  # the context is drawn per copy
    same, quiet = _noisy_copy(audio, np.random.default_rng(0), beds,
                              TuneOptions(context_s=0.0, pause_prob=0.0))
    assert same.size == audio.size
    np.testing.assert_array_equal(quiet, audio)


def test_crowd_beds_are_independent_draws() -> None:
    """Each crowd kind gets crowd_beds beds of crowd_bed_s, all different: one long bed
    would loop the same 3-6 talker tracks under every copy."""
    opts = TuneOptions(crowd_beds=3, crowd_bed_s=2.0)
    beds = crowd_beds(opts, np.random.default_rng(0))
    assert sorted(beds) == ["babble", "cafe"]
    for kind, kind_beds in beds.items():
        assert [b.size for b in kind_beds] == [2 * SR] * 3, kind
        assert all(np.isfinite(b).all() and np.std(b) > 0 for b in kind_beds), kind
        for i in range(3):
            for j in range(i + 1, 3):
                assert not np.allclose(kind_beds[i], kind_beds[j]), (kind, i, j)
    again = crowd_beds(opts, np.random.default_rng(0))
    np.testing.assert_array_equal(again["babble"][2], beds["babble"][2])  # seeded
    with pytest.raises(ConfigError, match="crowd_beds must be >= 1"):
        TuneOptions(crowd_beds=0).validate(4)


def test_crowd_beds_draw_on_crowd_talkers_voices() -> None:
    """A larger training crowd: the beds' babble is mixed from that many pool tracks."""
    beds = crowd_beds(TuneOptions(crowd_beds=1, crowd_bed_s=1.0, crowd_talkers=24),
                      np.random.default_rng(0))
    rng = np.random.default_rng(0)
    expected = aug.make_noise("babble", SR, rng, crowd_pool="train", crowd_talkers=24)
    np.testing.assert_array_equal(beds["babble"][0], expected)
    standard = crowd_beds(TuneOptions(crowd_beds=1, crowd_bed_s=1.0), np.random.default_rng(0))
    assert not np.allclose(standard["babble"][0], expected)
    with pytest.raises(ConfigError, match=r"--crowd-talkers: a crowd pool holds 6\.\.228"):
        TuneOptions(crowd_talkers=3).validate(4)


def test_noisy_copies_get_mid_command_pauses() -> None:
    """With pause_prob 1 every copy is 0.3-1.2 s longer (the pause, then filled by noise);
    with 0 none is."""
    audio = speechlike(SR, seed=4).astype(np.float32)
    beds = _one_bed_each()
    grown = []
    for s in range(10):
        copy, quiet = _noisy_copy(audio, np.random.default_rng(s), beds,
                                  TuneOptions(context_s=0.0, pause_prob=1.0))
        grown.append(copy.size - audio.size)
        # Without its noise the copy is the utterance around one silent run: the pause.
        assert quiet.size == copy.size
        at, n = int(np.argmax(quiet == 0)), grown[-1]
        assert 0 < at < audio.size and not quiet[at : at + n].any()
        np.testing.assert_array_equal(np.concatenate([quiet[:at], quiet[at + n :]]), audio)
    assert all(0.3 * SR <= g <= 1.2 * SR for g in grown)
    assert len(set(grown)) == 10
    assert all(_noisy_copy(audio, np.random.default_rng(s), beds,
                           TuneOptions(context_s=0.0, pause_prob=0.0))[0].size == audio.size
               for s in range(10))
    with pytest.raises(ConfigError, match=r"--pause-prob must be in \[0, 1\]"):
        TuneOptions(pause_prob=1.5).validate(4)


def test_distill_targets_are_the_encoders_own_embeddings_of_the_quiet_copy() -> None:
    """Before tuning, a clean clip's tuned-path embeddings equal its target (the loss is ~0,
    up to the float16 cache); its noisy copy is far from the target it is pulled towards."""
    enc = WT.load_encoder(W.model_dir()).eval()
    split = WT.SplitEncoder(enc, 2)
    audio = speechlike(2 * SR, seed=6)
    beds = _one_bed_each()
    noisy, quiet = _noisy_copy(audio, np.random.default_rng(3), beds,
                               TuneOptions(context_s=0.4, pause_prob=1.0))
    clips = [(audio, audio), (noisy, quiet)]
    with torch.no_grad():
        x, mask = split.upper([split.lower(a) for a, _ in clips])
        targets = split.targets([q for _, q in clips])
        # A padded batch of targets is each clip's alone (the shorter one is padded).
        alone_target = split.targets([audio])[0]
        np.testing.assert_allclose(targets[0].float().numpy(), alone_target.float().numpy(),
                                   atol=2e-2)
        assert [t.shape[0] for t in targets] == mask.sum(dim=1).tolist()
        scale = float(targets[0].float().pow(2).mean())
        alone = [float(WT.distill_loss(x[i : i + 1], mask[i : i + 1], targets[i : i + 1]))
                 / scale for i in range(2)]
        both = float(WT.distill_loss(x, mask, targets)) / scale
    assert alone[0] < 1e-3 < 0.05 < alone[1]
    n = mask.sum(dim=1).float()
    assert both == pytest.approx(float((alone[0] * n[0] + alone[1] * n[1]) / n.sum()), rel=1e-4)
    with pytest.raises(ValueError, match=r"clip 0: \d+ embeddings but a target of \d+"):
        WT.distill_loss(x, mask, [targets[1], targets[1]])
    with pytest.raises(ConfigError, match=r"--distill must be in \[0, 100\]"):
        TuneOptions(distill=-1.0).validate(4)


def test_tune_with_distillation_reports_both_losses(compact_model: Path, synth_data: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "model"
    summary = tune(compact_model, str(synth_data), out,
                   TuneOptions(layers=1, epochs=2, variants=1, distill=1.0, encoder_lr=5e-4,
                               crowd_bed_s=8.0, crowd_beds=2))
    report = json.loads((out / "report.json").read_text())["tuned_encoder"]
    assert report["options"]["distill"] == 1.0
    assert len(report["epoch_loss"]) == len(report["epoch_distill_loss"]) == 2
    # Pulled towards the quiet copies, the noisy ones come closer over the epochs.
    assert 0 < report["epoch_distill_loss"][1] < report["epoch_distill_loss"][0]
    assert 0 <= summary["test_accuracy"] <= 1


@pytest.fixture(scope="module")
def tuned_model(compact_model: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tuned") / "model"
    summary = tune(compact_model, str(synth_data), out,
                   TuneOptions(layers=1, epochs=1, variants=1, crowd_bed_s=8.0, crowd_beds=2))
    return out, summary


def test_tune_writes_a_model_the_daemon_loads(tuned_model: tuple[Path, dict],
                                              compact_model: Path) -> None:
    out, summary = tuned_model
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["frontend_weights"] == "whisper" and (out / "whisper" / "model.bin").is_file()
    assert not (out / "checkpoints").exists() and not (out / "cache").exists()
    assert not (out.parent / f".{out.name}.partial").exists()  # built aside, then renamed
    report = json.loads((out / "report.json").read_text())["tuned_encoder"]
    assert report["copies_per_utterance"] == 2 and len(report["epoch_loss"]) == 1
    # One epoch at a low rate keeps what the head knew: still well above chance (1/3).
    assert report["test_accuracy"] == summary["test_accuracy"] >= 0.8
    assert cfg["score_temperature"] == pytest.approx(report["calibration"]["score_temperature"],
                                                     abs=1e-4)
    backend = load_backend(out)
    assert backend.frontend_weights == out / "whisper"
    x = speechlike(2 * SR, seed=5)
    scorer = backend.utterance_scorer()
    scorer.push(x)
    tuned_p = scorer.result()
    ref = load_backend(compact_model).utterance_scorer()
    ref.push(x)
    assert tuned_p.shape == ref.result().shape and not np.allclose(tuned_p, ref.result())
    # The transformers pipeline path runs the tuned encoder too.
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert extractor.weights_dir == out / "whisper"
    assert "weights_dir" not in extractor.to_dict()
    feats = extractor([x], sampling_rate=SR, return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(feats, W.embed(x, weights=out / "whisper"), atol=1e-6)
    # The untuned model is untouched.
    assert json.loads((compact_model / "config.json").read_text()).get("frontend_weights") is None


def test_a_tuned_model_is_tuned_further_from_its_own_encoder(tuned_model: tuple[Path, dict],
                                                             synth_data: Path,
                                                             tmp_path: Path) -> None:
    """--model may be a tuned model: tuning goes on from its encoder, not the stock one (at a
    vanishing rate the result keeps the first tuning's weights)."""
    first, _ = tuned_model
    out = tmp_path / "again"
    tune(first, str(synth_data), out,
         TuneOptions(layers=1, epochs=1, variants=0, encoder_lr=1e-12, head_lr=1e-12))
    stock, once, twice = (WT.read_encoder(d / "model.bin")
                          for d in (W.model_dir(), first / "whisper", out / "whisper"))
    name = "layer_3/ffn/linear_0/weight"
    assert not np.allclose(once[name], stock[name], atol=1e-6)
    np.testing.assert_allclose(twice[name], once[name], atol=1e-6)
    assert json.loads((out / "config.json").read_text())["frontend_weights"] == "whisper"


def test_tune_stem_trains_the_convolutions(compact_model: Path, synth_data: Path,
                                           tmp_path: Path) -> None:
    """With --tune-stem the written encoder's convolutions move along with its layers (the
    cache holds log-mel) and the daemon scores with the result."""
    out = tmp_path / "model"
    tune(compact_model, str(synth_data), out,
         TuneOptions(layers=4, tune_stem=True, epochs=1, variants=0, encoder_lr=1e-3))
    stock, tuned = (WT.read_encoder(d / "model.bin") for d in (W.model_dir(), out / "whisper"))
    for name in ("conv1/weight", "conv2/weight", "layer_0/ffn/linear_0/weight"):
        assert not np.array_equal(stock[name], tuned[name]), name
    scorer = load_backend(out).utterance_scorer()
    scorer.push(speechlike(SR, seed=2))
    assert scorer.result().sum() == pytest.approx(1.0, abs=1e-4)


def test_tune_splits_the_data_as_fit_did(compact_model: Path, tmp_path: Path) -> None:
    assert fit_split(compact_model) == (0, 0.2)  # the fixture's fit seed
    (tmp_path / "report.json").write_text(json.dumps({"utterance_accuracy": 0.9}))
    assert fit_split(tmp_path) == (42, 0.2)  # older reports: fit's defaults


def test_missing_tuned_weights_is_one_clear_error(tuned_model: tuple[Path, dict],
                                                  tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "m"
    shutil.copytree(tuned_model[0], broken)
    shutil.rmtree(broken / "whisper")
    with pytest.raises(DataError, match=r"whisper/, but .*model.bin is missing"):
        load_backend(broken)


def test_tune_cli_errors_are_one_line(compact_model: Path, synth_data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from intentd.trainer.cli import main

    base = ["tune-encoder", "--model", str(compact_model), "--data", str(synth_data)]
    assert main([*base, "--out", str(tmp_path / "o"), "--epochs", "0"]) == 2
    assert main([*base[:2], str(tmp_path / "none"), *base[3:], "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["intentd-train: error: --epochs must be >= 1, got 0",
                   f"intentd-train: error: {tmp_path / 'none'}: no config.json; pass a model "
                   "dir from intentd-train fit"]
    assert not (tmp_path / "o").exists()


def test_tune_refuses_bad_targets(compact_model: Path, synth_data: Path,
                                  tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--out must differ"):
        tune(compact_model, str(synth_data), compact_model, TuneOptions())
    other = tmp_path / "kws"
    other.mkdir()
    cfg = json.loads((compact_model / "config.json").read_text())
    cfg["frontend"] = "speech_embedding"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="needs a compact model on the whisper_tiny_en"):
        tune(other, str(synth_data), tmp_path / "o", TuneOptions())
