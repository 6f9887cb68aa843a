"""``python -m intentd.trainer.cli``: user errors give exit 2 and one ``intentd-train: error:`` line
naming the file (and line), never a traceback. Runs as subprocesses, like a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audiofolder import write_split

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "intentd.trainer.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("intentd-train: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _folder(root: Path, rows: dict[str, list[tuple[str, str]]]) -> Path:
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    for split, items in rows.items():
        write_split(root, split, [
            (name, label, "v",
             tone if name.endswith(".wav") and not name.startswith("missing") else None)
            for name, label in items])
    return root


def test_help_lists_subcommands_quickly() -> None:
    proc = _cli("--help", timeout=30)
    assert proc.returncode == 0
    for cmd in ("synth", "democall", "fit"):
        assert cmd in proc.stdout
    proc = _cli("fit", "--help", timeout=60)
    assert proc.returncode == 0
    for flag in ("--data", "--model", "--out", "--resume", "--push-to-hub", "--window-s"):
        assert flag in proc.stdout


def test_fit_missing_audio_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train": [("a.wav", "x"), ("missing.wav", "y")],
                                    "test": [("b.wav", "x")]})
    line = _assert_user_error(_cli("fit", "--data", str(root), "--model", "compact",
                                   "--out", str(tmp_path / "o")))
    assert f"{root / 'train' / 'metadata.csv'}:3: audio file" in line
    assert "missing.wav not found" in line


def test_fit_corrupt_audio_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train": [("a.wav", "x"), ("b.wav", "y")],
                                    "test": [("c.wav", "x")]})
    (root / "train" / "b.wav").write_bytes(b"this is not a wav file" * 20)
    line = _assert_user_error(_cli("fit", "--data", str(root), "--model", "compact",
                                   "--out", str(tmp_path / "o")))
    assert f"{root / 'train' / 'metadata.csv'}:3: {root / 'train' / 'b.wav'}: cannot decode" \
        in line


def test_fit_test_label_not_in_train(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train": [("a.wav", "x"), ("b.wav", "y")],
                                    "test": [("c.wav", "x"), ("d.wav", "weather")]})
    line = _assert_user_error(_cli("fit", "--data", str(root), "--model", "compact",
                                   "--out", str(tmp_path / "o")))
    assert f"{root / 'test' / 'metadata.csv'}:3:" in line
    assert "'weather' has no training examples" in line


def test_fit_empty_dataset(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train": [], "test": []})
    _assert_user_error(_cli("fit", "--data", str(root), "--model", "compact", "--out",
                            str(tmp_path / "o")), str(root), "empty")


def test_fit_bad_option_value(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train": [("a.wav", "x"), ("b.wav", "y")],
                                    "test": [("c.wav", "x")]})
    _assert_user_error(_cli("fit", "--data", str(root), "--model", "compact", "--out",
                            str(tmp_path / "o"), "--epochs", "0"), "--epochs must be > 0")


@pytest.mark.parametrize(
    ("template", "needle"),
    [("turn on the $lamp", "undefined slot $lamp"), ("(turn | switch on the light", "unbalanced")],
)
def test_synth_bad_spec(tmp_path: Path, template: str, needle: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f'intents:\n  lights:\n    - "{template}"\n  other:\n    - "hello"\n')
    line = _assert_user_error(_cli("synth", str(spec), "--out", str(tmp_path / "o")))
    assert f"{spec}:3:" in line
    assert needle in line
