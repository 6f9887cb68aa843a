"""Model ensembles (intentd.daemon.model.ensemble, intentd-train ensemble): the verdict is the exact
mean of the members', the dir moves as one, and every bad combination is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_wav2vec2
from signals import speechlike

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model.ensemble import EnsembleBackend
from intentd.daemon.model.loader import load_backend
from intentd.trainer.cli import main as train_main
from intentd.trainer.tuning.ensemble_cli import build_ensemble


def _other_weights(src: Path, out: Path) -> Path:
    """``src`` with its classifier re-drawn: the same labels, other probabilities."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(src)
    torch.manual_seed(1)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
    model.save_pretrained(out)
    AutoFeatureExtractor.from_pretrained(src).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ensemble_members")
    a = make_tiny_wav2vec2(d / "a", labels=("a", "b", "c"))
    return a, _other_weights(a, d / "b")


def test_verdicts_are_the_mean_of_the_members(members: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    build_ensemble(list(members), tmp_path / "ens")
    ens = load_backend(tmp_path / "ens")
    a, b = (load_backend(m) for m in members)
    assert isinstance(ens, EnsembleBackend)
    assert ens.labels == ("a", "b", "c") and ens.sample_rate_hz == 16000
    assert ens.name == "ens"
    windows = np.stack([speechlike(16000, seed=s) for s in range(3)])
    pa, pb = a.classify_windows(windows), b.classify_windows(windows)
    assert not np.allclose(pa, pb, atol=1e-3)  # the members do disagree
    np.testing.assert_allclose(ens.classify_windows(windows), (pa + pb) / 2, atol=1e-6)
    audio = speechlike(24000, seed=7)
    scorers = [ens.utterance_scorer(), a.utterance_scorer(), b.utterance_scorer()]
    for chunk in np.array_split(audio, 5):
        for s in scorers:
            s.push(chunk)
    got, ra, rb = (s.result() for s in scorers)
    assert got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, (ra + rb) / 2, atol=1e-6)
    assert got.sum() == pytest.approx(1.0, abs=1e-5)


def test_the_ensemble_dir_moves_as_one(members: tuple[Path, Path], tmp_path: Path) -> None:
    summary = build_ensemble(list(members), tmp_path / "ens")
    assert summary["members"] == ["members/0-a", "members/1-b"]
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert config["model_type"] == "intentd-ensemble" and config["sample_rate_hz"] == 16000
    assert config["id2label"] == {"0": "a", "1": "b", "2": "c"}
    assert not list(tmp_path.glob(".*partial"))
    windows = speechlike(16000)[None]
    before = load_backend(tmp_path / "ens").classify_windows(windows)
    for m in members:  # the copies inside are what loads
        shutil.move(m, m.with_name(m.name + "-gone"))
    try:
        moved = shutil.move(tmp_path / "ens", tmp_path / "elsewhere")
        np.testing.assert_array_equal(load_backend(moved).classify_windows(windows), before)
    finally:
        for m in members:
            shutil.move(m.with_name(m.name + "-gone"), m)


def test_bad_ensembles_are_one_clear_error(members: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = members
    with pytest.raises(ConfigError, match="at least 2 --model dirs, got 1"):
        build_ensemble([a], tmp_path / "x")
    with pytest.raises(ConfigError, match="the same --model dir is given twice"):
        build_ensemble([a, a], tmp_path / "x")
    other = make_tiny_wav2vec2(tmp_path / "other", labels=("a", "c", "b"))
    with pytest.raises(DataError, match=r"member other has labels \['a', 'c', 'b'\], member a "
                                        r"\['a', 'b', 'c'\]; members must share one label map"):
        build_ensemble([a, other], tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".*partial"))
    with pytest.raises(ConfigError, match="is inside member"):
        build_ensemble([a, b], a / "ens")
    build_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(DataError, match="already exists"):
        build_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(ConfigError, match="is itself an ensemble; pass its members"):
        build_ensemble([a, tmp_path / "ens"], tmp_path / "nested")
    # A hand-made nested one, and members gone missing, fail at load with the path named.
    nested = tmp_path / "nested"
    shutil.copytree(tmp_path / "ens", nested)
    shutil.copytree(tmp_path / "ens", nested / "members" / "2-ens")
    cfg = json.loads((nested / "config.json").read_text())
    (nested / "config.json").write_text(json.dumps(
        {**cfg, "members": [*cfg["members"], "members/2-ens"]}))
    with pytest.raises(DataError, match=r"member .*2-ens is itself an ensemble"):
        load_backend(nested)
    shutil.rmtree(tmp_path / "ens" / "members" / "1-b")
    with pytest.raises(DataError, match=r"member dir .*1-b is missing; copy the whole"):
        load_backend(tmp_path / "ens")
    (tmp_path / "ens" / "config.json").write_text(json.dumps(
        {"model_type": "intentd-ensemble", "members": "members/0-a"}))
    with pytest.raises(DataError, match=r"\"members\" must list at least 2 member model dirs"):
        load_backend(tmp_path / "ens")


def test_cli_builds_one_and_reports_errors_in_one_line(
        members: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = members
    assert train_main(["ensemble", "--model", str(a), "--model", str(b),
                       "--out", str(tmp_path / "ens")]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == ["a", "b", "c"]
    assert train_main(["ensemble", "--model", str(a), "--model", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "ens2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("intentd-train: error: model dir ") and "nope" in err
    assert len(err.splitlines()) == 1
