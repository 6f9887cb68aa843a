"""intentd.trainer.fitting.fit end to end: a tiny wav2vec2 through the HF Trainer (window view) and
the compact model on synthetic speech (utterance view), plus --resume from the cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiofolder import write_split

from intentd.daemon.errors import ConfigError
from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit

REPORT_KEYS = {"utterance_accuracy", "window_accuracy", "macro_f1", "train_seconds",
               "embed_seconds", "num_train", "num_test", "labels", "confusion_matrix", "model",
               "data"}


def _tone_folder(root: Path, train: int, test: int) -> Path:
    """Three 'intents' that differ in pitch; 1 s clips, so one window per clip."""
    rng = np.random.default_rng(0)
    freqs = {"high": 2500.0, "low": 300.0, "mid": 900.0}
    t = np.arange(16000) / 16000

    def clip(freq: float) -> np.ndarray:
        x = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.03 * rng.standard_normal()) * t)
        return x + 0.02 * rng.standard_normal(t.size)

    for split, n in (("train", train), ("test", test)):
        # A list, not a generator: the draws from rng keep their order (label, then i).
        write_split(root, split, [(f"{label}{i}.wav", label, f"{split}{i}", clip(freq))
                                  for label, freq in freqs.items() for i in range(n)])
    return root


@pytest.mark.slow
def test_tiny_wav2vec2_end_to_end(tiny_wav2vec2_dir: Path, tmp_path: Path) -> None:
    from intentd.daemon.model.compact import register

    register()  # the Auto classes must know the compact model

    data = _tone_folder(tmp_path / "tones", train=6, test=3)
    out = tmp_path / "model"
    report = fit(
        DataArguments(data=str(data)),
        ModelArguments(model=str(tiny_wav2vec2_dir), freeze_feature_encoder=False),
        TrainArguments(out=str(out), epochs=4, learning_rate=3e-3, batch_size=6,
                       warmup_ratio=0.0, seed=0, threads=1),
    )
    assert set(report) >= REPORT_KEYS
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["labels"] == ["high", "low", "mid"]
    assert (on_disk["num_train"], on_disk["num_test"]) == (18, 9)
    assert on_disk["input_view"] == "window"
    assert on_disk["calibration"] is None  # window scores would not fit utterance verdicts
    assert sum(map(sum, on_disk["confusion_matrix"])) == 9
    assert (out / "confusion_matrix.png").is_file()

    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
    assert len(losses) == 3  # epochs 2-4: evaluations before the midpoint are skipped
    assert losses[-1] < losses[0]

    from transformers import AutoConfig, pipeline

    assert AutoConfig.from_pretrained(out).label2id == {"high": 0, "low": 1, "mid": 2}
    clf = pipeline("audio-classification", model=str(out), device="cpu")
    audio, rate = sf.read(data / "test" / "low0.wav", dtype="float32")
    preds = clf({"raw": audio, "sampling_rate": rate}, top_k=3)
    assert sorted(p["label"] for p in preds) == ["high", "low", "mid"]
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_compact_learns_tiny_synthetic_set(compact_model: Path) -> None:
    report = json.loads((compact_model / "report.json").read_text())
    assert set(report) >= REPORT_KEYS
    assert report["model"] == "compact" and report["input_view"] == "utterance"
    assert report["labels"] == ["lights_on", "weather", "play_music"]
    assert report["utterance_accuracy"] >= 0.9
    assert 0.0 < report["window_accuracy"] <= 1.0
    assert sum(map(sum, report["confusion_matrix"])) == report["num_test"]
    # synth's noisy/ split: the same test utterances with noise, scored next to the clean.
    assert report["num_noisy"] == report["num_test"]
    assert 1 / 3 < report["noisy_utterance_accuracy"] <= 1.0
    assert report["embed_seconds"] > 0 and report["train_seconds"] > 0
    assert (compact_model / "confusion_matrix.png").is_file()
    # A service running as another user can read every file (the umask's 022 here).
    for f in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (compact_model / f).stat().st_mode & 0o777 == 0o666 & ~_umask(), f
    # Fitted on test + noisy, saved where the daemon reads it.
    cal = report["calibration"]
    assert cal["calibration_items"] == report["num_test"] + report["num_noisy"]
    assert 0.2 <= cal["score_temperature"] <= 5.0
    assert cal["nll_after"] <= cal["nll_before"]
    saved = json.loads((compact_model / "config.json").read_text())["score_temperature"]
    assert saved == pytest.approx(cal["score_temperature"], abs=1e-4)

    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    from intentd.daemon.model.compact import register

    register()  # the Auto classes must know the compact model

    model = AutoModelForAudioClassification.from_pretrained(compact_model)
    assert model.config.id2label == {0: "lights_on", 1: "weather", 2: "play_music"}
    assert AutoFeatureExtractor.from_pretrained(compact_model).sampling_rate == 16000
    clf = pipeline("audio-classification", model=str(compact_model), device="cpu")
    meta = (Path(report["data"]) / "test" / "metadata.csv").read_text().splitlines()
    name = meta[1].split(",")[0]
    audio, rate = sf.read(Path(report["data"]) / "test" / name, dtype="float32")
    preds = clf({"raw": audio, "sampling_rate": rate}, top_k=3)
    assert sorted(p["label"] for p in preds) == sorted(report["labels"])


def _fit_counting_embeddings(data: Path, args: TrainArguments,
                             model_args: ModelArguments | None = None) -> tuple[dict, int]:
    """``fit`` of the compact model, and how often it ran the embedding front-end."""
    from intentd.daemon.model import frontends

    calls: list[int] = []
    real = frontends.embed_many

    def counting(*a: object, **kw: object) -> list[np.ndarray]:
        calls.append(1)
        return real(*a, **kw)  # type: ignore[arg-type]

    frontends.embed_many = counting  # type: ignore[assignment]
    try:
        report = fit(DataArguments(data=str(data)),
                     model_args or ModelArguments(model="compact", head_channels=128), args)
    finally:
        frontends.embed_many = real  # type: ignore[assignment]
    return report, len(calls)


@pytest.mark.slow
def test_compact_resume_reuses_cache_and_checkpoint(compact_model: Path, synth_data: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(compact_model, out)
    before = json.loads((out / "report.json").read_text())
    report, calls = _fit_counting_embeddings(
        synth_data, TrainArguments(out=str(out), batch_size=32, seed=0, resume=True))
    assert calls == 0  # every embedding came from OUT/cache
    # resumed at the final checkpoint: nothing left to train, same best model
    assert report["utterance_accuracy"] == before["utterance_accuracy"]
    # Another head width cannot load those weights: one line that names the flag.
    with pytest.raises(ConfigError, match=r"--resume: .*checkpoint-\d+ was trained with "
                                          r"hidden_size=128, this run asks for 64 "
                                          r"\(--head-channels\)"):
        _fit_counting_embeddings(
            synth_data, TrainArguments(out=str(out), batch_size=32, seed=0, resume=True),
            ModelArguments(model="compact", head_channels=64))


@pytest.mark.slow
def test_compact_without_window_eval_embeds_no_windows(compact_model: Path, synth_data: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "nowin"
    out.mkdir()
    shutil.copytree(compact_model / "cache", out / "cache")
    # Only the utterance embeddings stay cached: any window embedding would be computed anew.
    for win in (out / "cache").rglob("*-w*.npy"):
        win.unlink()
    report, calls = _fit_counting_embeddings(
        synth_data, TrainArguments(out=str(out), epochs=1, batch_size=32, seed=0,
                                   window_eval=False))
    assert calls == 0
    assert report["window_accuracy"] is None
    assert 0.0 <= report["utterance_accuracy"] <= 1.0
    assert json.loads((out / "report.json").read_text())["window_accuracy"] is None
