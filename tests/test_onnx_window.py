"""Window models on ONNX Runtime: ``intentd-train export``, the onnx backends against torch,
the ``model.backend`` choice, the daemon end to end, error lines, and no torch at run time."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_SPEC, make_tiny_wav2vec2
from signals import speechlike

from intentd.daemon.audio.windowing import WindowSpec, cut_windows
from intentd.daemon.config import load_config
from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model import onnx_window as ow
from intentd.daemon.model.loader import HFBackend, load_backend

REPO = Path(__file__).resolve().parents[1]
LABELS = ("lights_on", "weather", "play_music")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short generated call (3 commands, held-out voices, noise): real speech windows."""
    from intentd.trainer.synthesis.democall import make_call

    d = tmp_path_factory.mktemp("onnx_call")
    make_call(TINY_SPEC, d / "call.wav", d / "call.csv", n_utterances=3, seed=0)
    return d / "call.wav"


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random wav2vec2 classifier, not exported."""
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("models") / "w2v", LABELS)


@pytest.fixture(scope="module")
def exported(plain_dir: Path, call: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, dict[str, Any]]:
    from intentd.trainer.tuning.export import export

    d = tmp_path_factory.mktemp("exported") / "w2v"
    shutil.copytree(plain_dir, d)
    return d, export(d, call.parent, threads=1)


def _with_record(src: Path, dst: Path, **changes: Any) -> Path:
    """A copy of an exported dir whose export.json has ``changes`` applied."""
    shutil.copytree(src, dst)
    path = dst / ow.ONNX_SUBDIR / ow.EXPORT_JSON
    record = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(record))
    return dst


# ---------------------------------------------------------------- (a) onnx == torch


def test_onnx_fp32_probabilities_equal_torch(exported: tuple[Path, dict[str, Any]],
                                             call: Path) -> None:
    d, _ = exported
    import soundfile as sf

    torch_b, onnx_b = load_backend(d, 1, "torch"), load_backend(d, 1, "onnx")
    assert isinstance(torch_b, HFBackend) and isinstance(onnx_b, ow.OnnxWindowBackend)
    assert (onnx_b.name, onnx_b.labels, onnx_b.sample_rate_hz, onnx_b.temperature) == (
        torch_b.name, torch_b.labels, torch_b.sample_rate_hz, torch_b.temperature)
    audio, _ = sf.read(str(call), dtype="float32")
    windows = cut_windows(audio[16000:80000], WindowSpec())  # 20 windows: two batches
    probs = onnx_b.classify_windows(windows)
    assert probs.shape == (windows.shape[0], 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, torch_b.classify_windows(windows), atol=1e-4)
    assert onnx_b.classify_windows(np.zeros((0, 16000), np.float32)).shape == (0, 3)

    utterance = speechlike(23457, seed=4)  # odd length: the samples axis is dynamic
    scorer = onnx_b.utterance_scorer()
    for s in range(0, utterance.size, 480):
        scorer.push(utterance[s : s + 480])
    np.testing.assert_allclose(scorer.result(), torch_b.classify_batch([utterance])[0],
                               atol=1e-4)
    # Unequal lengths run one at a time: each row is what that clip scores alone.
    clips = [speechlike(n, seed=n) for n in (9000, 16000, 12345)]
    alone = np.stack([onnx_b.classify_batch([c])[0] for c in clips])
    np.testing.assert_allclose(onnx_b.classify_batch(clips), alone, atol=1e-6)


# ---------------------------------------------------------------- (b) the export record


def test_export_record(exported: tuple[Path, dict[str, Any]]) -> None:
    d, record = exported
    assert json.loads((d / "onnx" / "export.json").read_text()) == record
    assert (d / "onnx" / "model.onnx").is_file() and (d / "onnx" / "model.int8.onnx").is_file()
    assert record["schema"] == ow.EXPORT_SCHEMA and record["threads"] == 1
    assert record["cpu"] and record["onnxruntime"]
    assert 10 <= record["windows"] <= 300  # speech windows of a 15 s call
    assert set(record["ms_per_window"]) == {"torch", "onnx", "onnx-int8"}
    assert all(v > 0 for v in record["ms_per_window"].values())
    assert record["agreement"]["onnx"] == 1.0
    assert 0.0 <= record["agreement"]["onnx-int8"] <= 1.0  # measured, whatever it is
    assert record["max_prob_diff"]["onnx"] < 1e-4
    assert record["usable"] == ow.usable(record["ms_per_window"], record["agreement"],
                                         record["max_prob_diff"]["onnx"])
    assert record["source_sha256"]["model.safetensors"]


def test_usable_rule() -> None:
    fast_int8 = {"torch": 100.0, "onnx": 80.0, "onnx-int8": 50.0}
    slow_int8 = {"torch": 100.0, "onnx": 80.0, "onnx-int8": 90.0}
    good = {"onnx": 1.0, "onnx-int8": 0.995}
    assert ow.usable(fast_int8, good, 1e-6) == {"onnx": True, "onnx-int8": True}
    assert ow.usable(slow_int8, good, 1e-6) == {"onnx": True, "onnx-int8": False}
    assert ow.usable(fast_int8, {"onnx": 1.0, "onnx-int8": 0.98}, 1e-6)["onnx-int8"] is False
    assert ow.usable(fast_int8, {"onnx": 0.98, "onnx-int8": 0.995}, 1e-6)["onnx"] is False
    unmeasured = {"onnx": None, "onnx-int8": None}
    assert ow.usable(fast_int8, unmeasured, 1e-6) == {"onnx": True, "onnx-int8": False}
    assert ow.usable(fast_int8, good, 0.01)["onnx"] is False  # the graph is not the model


def test_export_without_windows(plain_dir: Path, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    from intentd.trainer.tuning.export import export

    d = tmp_path / "w2v"
    shutil.copytree(plain_dir, d)
    with caplog.at_level(logging.INFO):
        record = export(d, None)
    assert record["windows"] == 0 and record["windows_from"] is None
    assert record["agreement"] == {"onnx": None, "onnx-int8": None}
    assert record["usable"] == {"onnx": True, "onnx-int8": False}
    assert "agreement with torch is not measured" in caplog.text
    assert isinstance(load_backend(d), ow.OnnxWindowBackend)  # auto: onnx fp32


# ---------------------------------------------------------------- (c) the choice


def test_choose() -> None:
    both = {"usable": {"onnx": True, "onnx-int8": True}}
    fp32 = {"usable": {"onnx": True, "onnx-int8": False}}
    neither = {"usable": {"onnx": False, "onnx-int8": False}}
    assert ow.choose("auto", None) == "torch"
    assert ow.choose("auto", both) == "onnx-int8"
    assert ow.choose("auto", fp32) == "onnx"
    assert ow.choose("auto", neither) == "torch"
    for asked in ("torch", "onnx", "onnx-int8"):
        assert ow.choose(asked, neither) == asked
    with pytest.raises(ValueError):
        ow.choose("onx", None)


def test_auto_loads_what_the_record_says(exported: tuple[Path, dict[str, Any]],
                                         plain_dir: Path, tmp_path: Path) -> None:
    d, record = exported
    backend = load_backend(d)
    chosen = ow.choose("auto", record)
    if chosen == "torch":
        assert isinstance(backend, HFBackend)
    else:
        assert isinstance(backend, ow.OnnxWindowBackend) and backend.variant == chosen
    int8 = _with_record(d, tmp_path / "int8", usable={"onnx": True, "onnx-int8": True})
    assert load_backend(int8).variant == "onnx-int8"  # type: ignore[union-attr]
    none = _with_record(d, tmp_path / "none", usable={"onnx": False, "onnx-int8": False})
    assert isinstance(load_backend(none), HFBackend)
    assert isinstance(load_backend(plain_dir), HFBackend)  # not exported


def test_int8_asked_for_but_not_qualified_warns(exported: tuple[Path, dict[str, Any]],
                                                tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    d = _with_record(exported[0], tmp_path / "w2v", usable={"onnx": True, "onnx-int8": False},
                     agreement={"onnx": 1.0, "onnx-int8": 0.9}, windows=200,
                     ms_per_window={"torch": 9.0, "onnx": 5.0, "onnx-int8": 6.0})
    with caplog.at_level(logging.WARNING):
        backend = load_backend(d, 1, "onnx-int8")
    assert backend.variant == "onnx-int8"  # type: ignore[union-attr]
    assert "agreed with torch fp32 on 90.0% of 200 windows" in caplog.text
    assert "took 6.0 ms per window against 5.0 ms for onnx fp32" in caplog.text


# ---------------------------------------------------------------- (e) errors


def test_onnx_without_export_is_one_line(plain_dir: Path) -> None:
    for asked in ("onnx", "onnx-int8"):
        with pytest.raises(DataError, match=r"run `intentd-train export --model .*w2v`") as err:
            load_backend(plain_dir, 1, asked)
        assert "\n" not in str(err.value)


def test_stale_export_is_refused(exported: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    d = _with_record(exported[0], tmp_path / "w2v",
                     source_sha256={"model.safetensors": "0" * 64})
    with pytest.raises(DataError, match="exported from other weights"):
        load_backend(d, 1, "onnx")


def test_bad_backend_in_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model:\n  threads: 1\n  backend: onx\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert str(err.value) == (f"{cfg}:3: model.backend = 'onx' is invalid; allowed: auto, "
                              "torch, onnx, onnx-int8")
    cfg.write_text("model:\n  backend: onnx-int8\n")
    assert load_config(cfg).model.backend == "onnx-int8"


def _export_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "intentd.trainer.cli", "export", *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("intentd-train: error: "), proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_export_errors(tmp_path: Path, plain_dir: Path) -> None:
    compact = tmp_path / "compact"
    compact.mkdir()
    (compact / "config.json").write_text(json.dumps({"model_type": "intentd-compact"}))
    _one_error_line(_export_cli("--model", str(compact)), "is a compact model")
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "config.json").write_text(json.dumps({"model_type": "intentd-ensemble"}))
    _one_error_line(_export_cli("--model", str(ens)), "is an ensemble; export each member")
    (tmp_path / "empty").mkdir()
    _one_error_line(_export_cli("--model", str(plain_dir), "--windows-from",
                                str(tmp_path / "empty")), "no .wav or .flac files")
    assert not (plain_dir / "onnx").exists()  # refused before anything was written


# ---------------------------------------------------------------- (d) the daemon, (f) no torch


def _daemon_verdicts(model: Path, wav: Path, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "intentd.daemon", "--model", str(model),
                           "--input", str(wav), "--no-realtime", "--threshold", "0", *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [e for e in events if e["type"] in ("intent", "no_match")]


@pytest.mark.slow
def test_daemon_onnx_gives_torch_verdicts(exported: tuple[Path, dict[str, Any]],
                                          call: Path) -> None:
    d, _ = exported
    on_torch = _daemon_verdicts(d, call, "--backend", "torch")
    on_onnx = _daemon_verdicts(d, call, "--backend", "onnx")
    assert len(on_torch) == 3
    assert [(e["type"], e.get("intent"), e["start_s"], e["end_s"]) for e in on_onnx] == [
        (e["type"], e.get("intent"), e["start_s"], e["end_s"]) for e in on_torch]
    for a, b in zip(on_onnx, on_torch, strict=True):
        assert [t["intent"] for t in a["top"]] == [t["intent"] for t in b["top"]]
        assert abs(a["score"] - b["score"]) <= 1e-4  # scores carry 4 decimals


_NO_TORCH = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
import numpy as np
from intentd.daemon.model.loader import load_backend

backend = load_backend(sys.argv[1], 1, "onnx")
probs = backend.classify_windows(np.random.default_rng(0).standard_normal((1, 16000),
                                                                          dtype=np.float32))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(type(backend).__name__, probs.shape, loaded)
"""


@pytest.mark.slow
def test_onnx_backend_runs_without_torch(exported: tuple[Path, dict[str, Any]]) -> None:
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, str(exported[0])], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "OnnxWindowBackend (1, 3) []"
