"""End to end: eight generated calls as eight ``--input`` streams of ONE daemon process.

Every stream's events must equal those of the same call run alone (intent, score within
1e-4, start/end), in the stream's own order and under its own name; a corrupt input among
them ends alone with one log line while the others complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_CALLS = 8
N_UTTERANCES = 4
RATES_HZ = (16000, 8000, 16000, 16000, 8000, 16000, 16000, 8000)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _daemon(model: Path, *inputs: str) -> subprocess.CompletedProcess[str]:
    args = [a for inp in inputs for a in ("--input", inp)]
    return subprocess.run([sys.executable, "-m", "intentd.daemon", "--model", str(model),
                           *args, "--no-realtime"], env=_env(), capture_output=True,
                          text=True, timeout=600)


def _verdicts(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [e for e in events if e["type"] in ("intent", "no_match")]


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory, tiny_spec: Any) -> list[Path]:
    """Eight calls, each from its own seed (its own held-out voices); three at 8 kHz."""
    import soxr

    from intentd.trainer.synthesis.democall import make_call

    d = tmp_path_factory.mktemp("calls")
    out = []
    for k, rate in enumerate(RATES_HZ):
        wav = d / f"call{k}.wav"
        make_call(tiny_spec, wav, d / f"call{k}.csv", n_utterances=N_UTTERANCES, seed=100 + k)
        if rate != 16000:
            audio, sr = sf.read(str(wav), dtype="float32")
            sf.write(str(wav), soxr.resample(audio, sr, rate, quality="HQ"), rate,
                     subtype="PCM_16")
        out.append(wav)
    return out


@pytest.fixture(scope="module")
def alone(calls: list[Path], compact_model: Any) -> list[list[dict[str, Any]]]:
    """Each call run alone, in its own process."""
    runs = []
    for wav in calls:
        p = _daemon(Path(compact_model), str(wav))
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append(_verdicts(p.stdout))
    return runs


def _key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["type"], e["intent"], e["start_s"], e["end_s"], e["utterance_id"])


def test_eight_streams_in_one_process_equal_each_call_alone(
        calls: list[Path], alone: list[list[dict[str, Any]]], compact_model: Any) -> None:
    p = _daemon(Path(compact_model), *(f"line{k}={wav}" for k, wav in enumerate(calls)))
    assert p.returncode == 0, p.stderr[-3000:]
    together = _verdicts(p.stdout)
    assert {e["stream"] for e in together} == {f"line{k}" for k in range(N_CALLS)}
    for k, solo in enumerate(alone):
        assert len(solo) >= N_UTTERANCES - 1, f"call {k}: {len(solo)} verdicts alone"
        mine = [e for e in together if e["stream"] == f"line{k}"]
        assert [_key(e) for e in mine] == [_key(e) for e in solo], f"line{k}"
        for a, b in zip(mine, solo, strict=True):
            assert abs(a["score"] - b["score"]) <= 1e-4, (k, a, b)
            np.testing.assert_allclose([t["score"] for t in a["top"]],
                                       [t["score"] for t in b["top"]], atol=1e-4)
        assert [e["utterance_id"] for e in mine] == sorted(e["utterance_id"] for e in mine)
    assert sum(e["type"] == "intent" for e in together) >= 0.8 * len(together)


def test_a_corrupt_input_ends_alone_and_the_others_complete(
        calls: list[Path], alone: list[list[dict[str, Any]]], compact_model: Any,
        tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    p = _daemon(Path(compact_model), str(calls[0]), f"bad={broken}", str(calls[1]))
    assert p.returncode == 2, p.stderr[-3000:]  # bad input, said after the others completed
    together = _verdicts(p.stdout)
    for k in (0, 1):
        mine = [e for e in together if e["stream"] == f"call{k}"]
        assert [_key(e) for e in mine] == [_key(e) for e in alone[k]]
    bad_lines = [line for line in p.stderr.splitlines() if "stream bad" in line]
    assert len(bad_lines) == 1 and "cannot read audio file" in bad_lines[0], p.stderr
    assert "Traceback" not in p.stderr
