"""``intentd-train soup``: the weight average of models tuned from one model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from signals import speechlike

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model.loader import load_backend
from intentd.trainer.tuning import whisper_torch as WT
from intentd.trainer.tuning.soup import build_soup
from intentd.trainer.tuning.tune_encoder import TuneOptions, tune

SR = 16000


@pytest.fixture(scope="module")
def siblings(compact_model: Path, synth_data: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tunings of one model (other seeds, a rate high enough that they part)."""
    root = tmp_path_factory.mktemp("siblings")
    out = []
    for seed in (0, 1):
        d = root / f"t{seed}"
        tune(compact_model, str(synth_data), d,
             TuneOptions(layers=1, epochs=1, variants=0, encoder_lr=1e-4, seed=seed))
        out.append(d)
    return out[0], out[1]


def test_a_soup_is_the_mean_of_its_members(siblings: tuple[Path, Path], synth_data: Path,
                                           tmp_path: Path) -> None:
    a, b = siblings
    out = tmp_path / "soup"
    summary = build_soup([a, b], str(synth_data), out, threads=1)
    heads = [load_file(d / "model.safetensors") for d in (a, b, out)]
    for name in ("classifier.weight", "projection.weight", "pool.convs.0.bias"):
        assert not torch.equal(heads[0][name], heads[1][name]), name  # the members differ
        torch.testing.assert_close(heads[2][name], (heads[0][name] + heads[1][name]) / 2,
                                   atol=1e-6, rtol=0)
    encs = [WT.read_encoder(d / "whisper" / "model.bin") for d in (a, b, out)]
    name = "layer_3/ffn/linear_0/weight"
    assert not np.array_equal(encs[0][name], encs[1][name])
    mean = (encs[0][name].astype(np.float32) + encs[1][name].astype(np.float32)) / 2
    np.testing.assert_allclose(encs[2][name].astype(np.float32), mean, atol=2e-3)  # float16
    np.testing.assert_array_equal(encs[2]["layer_0/ffn/linear_0/weight"],
                                  encs[0]["layer_0/ffn/linear_0/weight"])  # untuned: as stock
    cfg = json.loads((out / "config.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert cfg["frontend_weights"] == "whisper"
    assert cfg["score_temperature"] == pytest.approx(
        report["soup"]["calibration"]["score_temperature"], abs=1e-4)
    assert [m["model"] for m in report["soup"]["members"]] == [str(a), str(b)]
    assert report["split"] == {"seed": 0, "test_fraction": 0.2}  # the fixture's fit
    assert summary["held_out_accuracy"] == report["soup"]["held_out_accuracy"] >= 0.8
    assert not (out / "trainer_state.json").exists()
    assert not (tmp_path / ".soup.partial").exists()
    # The daemon scores with it, its averaged encoder included.
    backend = load_backend(out)
    assert backend.frontend_weights == out / "whisper"
    scorer = backend.utterance_scorer()
    scorer.push(speechlike(2 * SR, seed=5))
    assert scorer.result().sum() == pytest.approx(1.0, abs=1e-4)


def test_a_soup_of_untuned_models_keeps_the_stock_encoder(compact_model: Path,
                                                          synth_data: Path,
                                                          tmp_path: Path) -> None:
    """A model and its copy: the soup is that model (no tuned encoder to write)."""
    twin = tmp_path / "twin"
    shutil.copytree(compact_model, twin)
    out = tmp_path / "soup"
    build_soup([compact_model, twin], str(synth_data), out, threads=1)
    assert not (out / "whisper").exists()
    assert json.loads((out / "config.json").read_text()).get("frontend_weights") is None
    ours, theirs = (load_file(d / "model.safetensors") for d in (out, compact_model))
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, atol=1e-6, rtol=0)
    report = json.loads((out / "report.json").read_text())["soup"]
    assert report["held_out_accuracy"] == report["members"][0]["held_out_accuracy"]


def test_a_soup_worse_than_its_best_member_is_refused(compact_model: Path, synth_data: Path,
                                                     tmp_path: Path) -> None:
    """Weights that cancel (here the classifier's, negated) average to a model that guesses
    one class: refused, and nothing is written."""
    flipped = tmp_path / "flipped"
    shutil.copytree(compact_model, flipped)
    state = load_file(flipped / "model.safetensors")
    state["classifier.weight"] = -state["classifier.weight"]
    save_file(state, flipped / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "soup"
    with pytest.raises(DataError, match=r"were not tuned from one model.*intentd-train "
                                        r"ensemble"):
        build_soup([compact_model, flipped], str(synth_data), out, threads=1)
    assert not out.exists() and not (tmp_path / ".soup.partial").exists()


def test_soup_members_are_checked(compact_model: Path, synth_data: Path,
                                  tiny_wav2vec2_dir: Path, tmp_path: Path) -> None:
    data = str(synth_data)
    with pytest.raises(ConfigError, match="at least 2 --model dirs, got 1"):
        build_soup([compact_model], data, tmp_path / "o")
    with pytest.raises(ConfigError, match="given twice"):
        build_soup([compact_model, compact_model], data, tmp_path / "o")
    twin = tmp_path / "twin"
    shutil.copytree(compact_model, twin)
    with pytest.raises(DataError, match="already exists"):
        build_soup([compact_model, twin], data, twin)
    with pytest.raises(ConfigError, match="is inside member"):
        build_soup([compact_model, twin], data, twin / "sub")
    with pytest.raises(ConfigError, match=r"soup averages compact models.*ensemble"):
        build_soup([compact_model, tiny_wav2vec2_dir], data, tmp_path / "o")
    wide = tmp_path / "wide"
    shutil.copytree(compact_model, wide)
    cfg = json.loads((wide / "config.json").read_text())
    cfg["hidden_size"] = 2 * cfg["hidden_size"]
    (wide / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"differ in hidden_size; .*tuned from one model"):
        build_soup([compact_model, wide], data, tmp_path / "o")
    resplit = tmp_path / "resplit"
    shutil.copytree(compact_model, resplit)
    report = json.loads((resplit / "report.json").read_text())
    report["split"]["seed"] = 5
    (resplit / "report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match="different splits"):
        build_soup([compact_model, resplit], data, tmp_path / "o")
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        build_soup([compact_model, twin], data, tmp_path / "o", threads=0)
    # Both members carry the same edited labels, so only the data check can catch them.
    for name, id2label, error, match in (
            ("holes", {"0": "a", "2": "b"}, DataError, "id2label must name every class id"),
            ("renamed", None, ConfigError,
             r"differ from the model's .*pass the data the members were fit on")):
        pair = [tmp_path / f"{name}{i}" for i in (1, 2)]
        for member in pair:
            shutil.copytree(compact_model, member)
            cfg = json.loads((member / "config.json").read_text())
            cfg["id2label"] = id2label or {**cfg["id2label"], "0": "not_in_the_data"}
            (member / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(error, match=match):
            build_soup(pair, data, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_soup_cli_errors_are_one_line(compact_model: Path, synth_data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from intentd.trainer.cli import main

    missing = tmp_path / "none"
    assert main(["soup", "--model", str(compact_model), "--model", str(missing),
                 "--data", str(synth_data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"intentd-train: error: model dir {missing} "
                                               "does not exist")
