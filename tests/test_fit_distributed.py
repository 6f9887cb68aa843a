"""``intentd-train fit`` on two CPU processes (torchrun, gloo): one normal model dir, written
by rank 0, that the daemon loads and that scores as the single-process fit does."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The tiny data set's fit takes ~1 min on two loaded cores; far more means a hung rank.
TIMEOUT_S = 600


def _launch(synth_data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # torchrun rather than `accelerate launch --cpu`, which starts a single process unless
    # MPI is configured (docs/training.md); `accelerate launch --multi_gpu` runs torchrun.
    # --standalone: a free port on localhost, so parallel test runs do not collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "intentd.trainer", "fit", "--data", str(synth_data),
           "--model", "compact", "--head-channels", "128", "--batch-size", "32", "--seed", "0",
           "--out", str(out), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
                          check=False)


@pytest.mark.slow
def test_two_processes_train_one_model_the_daemon_loads(synth_data: Path,
                                                       tmp_path: Path) -> None:
    from intentd.daemon.model.loader import load_backend

    out = tmp_path / "model"
    run = _launch(synth_data, out)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "distributed: world size 2 (gloo)" in run.stderr
    assert "1 torch thread(s)" in run.stderr  # 2 processes on 2 cores: no oversubscription
    # Rank 0 alone prints the summary and writes the model dir.
    assert run.stdout.count("utterance_accuracy=") == 1
    assert run.stderr.count("confusion_matrix.png") == 1
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    assert report["utterance_accuracy"] >= 0.9  # as the single-process fixture
    assert report["best_checkpoint"]  # load_best_model_at_end chose on gathered predictions
    assert report["calibration"]["score_temperature"] > 0
    assert (out / "config.json").is_file() and (out / "preprocessor_config.json").is_file()
    assert not list(out.glob("*.tmp*")) and not list((out / "cache").rglob("*.tmp.npy"))

    backend = load_backend(out)
    hits = total = 0
    with open(synth_data / "test" / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows[::3]:  # held-out voices, every intent
        audio, rate = sf.read(synth_data / "test" / row["file_name"], dtype="float32")
        assert rate == backend.sample_rate_hz
        scorer = backend.utterance_scorer()
        scorer.push(audio)
        verdict = scorer.result()
        assert verdict.sum() == pytest.approx(1.0, abs=1e-4)
        hits += backend.labels[int(np.argmax(verdict))] == row["label"]
        total += 1
    assert total >= 8 and hits / total >= 0.8, (hits, total)


@pytest.mark.slow
def test_an_error_ends_the_launch_with_a_clear_line(synth_data: Path, tmp_path: Path) -> None:
    run = _launch(synth_data, tmp_path / "model", "--epochs", "-1")
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.splitlines() if "intentd-train: error:" in ln]
    # The launcher stops the other rank once one fails, sometimes before it has printed.
    assert 1 <= len(lines) <= 2, run.stderr[-3000:]
    for line in lines:
        assert line.startswith("intentd-train: error: rank ")
        assert line.endswith(" of 2: --epochs must be > 0, got -1.0")
    assert not (tmp_path / "model" / "report.json").exists()
