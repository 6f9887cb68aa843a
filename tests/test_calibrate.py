"""Temperature scaling (intentd.trainer.fitting.calibrate) and its use by the daemon's backends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from intentd.daemon.errors import DataError
from intentd.daemon.model import embedding
from intentd.daemon.model.compact import (
    CompactConfig,
    CompactFeatureExtractor,
    CompactForAudioClassification,
)
from intentd.daemon.model.loader import load_backend
from intentd.trainer.fitting.calibrate import (
    T_MAX,
    T_MIN,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)


def _drawn(true_t: float, n: int = 20000, classes: int = 6, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / true_t): calibrated at true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=(n, classes))
    p = softmax(z, true_t)
    y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return z, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_recovers_the_temperature_labels_were_drawn_at(true_t: float) -> None:
    z, y = _drawn(true_t)
    cal = fit_temperature(z, y)
    assert cal.temperature == pytest.approx(true_t, rel=0.06)
    assert cal.nll_after <= cal.nll_before + 1e-12
    assert cal.nll_after == pytest.approx(nll(z, y, cal.temperature))
    assert cal.ece_after < 0.02
    assert cal.items == len(y)


def test_fixes_an_under_confident_model() -> None:
    z, y = _drawn(1.0)
    cal = fit_temperature(z / 2.0, y)  # scores twice too soft, as label smoothing makes them
    assert cal.temperature == pytest.approx(0.5, rel=0.06)
    assert cal.ece_before > 0.1 > cal.ece_after


def test_temperature_keeps_the_ranking() -> None:
    z, _ = _drawn(1.0, n=500)
    for t in (T_MIN, 0.7, 3.0):
        assert (softmax(z, t).argmax(axis=1) == z.argmax(axis=1)).all()


def test_clamped_when_every_prediction_is_right_or_random() -> None:
    z = np.array([[4.0, 0.0], [0.0, 4.0]] * 50)
    y = np.array([0, 1] * 50)
    assert fit_temperature(z, y).temperature == pytest.approx(T_MIN, abs=1e-4)
    assert fit_temperature(z, 1 - y).temperature == pytest.approx(T_MAX, abs=1e-2)


def test_expected_calibration_error_exact() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    # Bin 0.9: confidence 0.9, one of two right -> |0.5 - 0.9|; bin 0.7: both right -> 0.3.
    assert expected_calibration_error(probs, np.array([0, 1, 1, 1])) == pytest.approx(
        0.5 * 0.4 + 0.5 * 0.3)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((4, 3)), np.zeros(3, dtype=int))


@pytest.fixture(scope="module")
def plain_compact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("calib") / "m"
    torch.manual_seed(0)
    CompactForAudioClassification(CompactConfig(id2label={0: "a", 1: "b", 2: "c"})
                                  ).save_pretrained(d)
    CompactFeatureExtractor().save_pretrained(d)
    return d


def _with_temperature(src: Path, dst: Path, value: object) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["score_temperature"] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_backend_divides_logits_by_the_saved_temperature(plain_compact: Path,
                                                         tmp_path: Path) -> None:
    emb = [np.random.default_rng(1).normal(size=(30, embedding.EMBEDDING_DIM)).astype(
        np.float32)]
    plain = load_backend(plain_compact)
    assert plain.temperature == 1.0
    p1 = plain.classify_embeddings(emb)[0]
    sharp = load_backend(_with_temperature(plain_compact, tmp_path / "t", 0.25))
    assert sharp.temperature == 0.25
    expected = softmax(np.log(p1)[None, :], 0.25)[0]
    np.testing.assert_allclose(sharp.classify_embeddings(emb)[0], expected, atol=1e-5)


@pytest.mark.parametrize("value", [0, -1.0, "hot", True, None])
def test_bad_saved_temperature_is_a_clear_error(plain_compact: Path, tmp_path: Path,
                                               value: object) -> None:
    d = _with_temperature(plain_compact, tmp_path / "bad", value)
    with pytest.raises(DataError, match="score_temperature must be a positive number"):
        load_backend(d)
