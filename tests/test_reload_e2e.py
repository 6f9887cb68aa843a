"""Service operations through a real ``intentd`` process: SIGHUP re-reads the config and the
model and swaps them in between utterances without closing the input; a broken config is
refused with one line and the old settings run on; SIGUSR1 logs the status; ``--check-config``
validates and exits 0 or 2."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from intentd.daemon.audio.windowing import preprocess

REPO = Path(__file__).resolve().parents[1]
SR = 16000


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _pcm(path: Path, silence_s: float = 2.5) -> bytes:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    a = np.concatenate([np.zeros(SR // 2, np.float32), preprocess(audio, rate, SR),
                        np.zeros(int(silence_s * SR), np.float32)])
    return (np.clip(a, -1, 1) * 32767).astype("<i2").tobytes()


class Daemon:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, env=_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._err, daemon=True).start()
        threading.Thread(target=self._out, daemon=True).start()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode())

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_log(self, text: str, timeout_s: float = 120.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.stderr[start:]:
                if text in line:
                    return line
            assert self.proc.poll() is None, "daemon died:\n" + "".join(self.stderr)
            time.sleep(0.05)
        raise AssertionError(f"no log line with {text!r}:\n" + "".join(self.stderr[-20:]))

    def feed(self, pcm: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(pcm)
        self.proc.stdin.flush()

    def verdict(self, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if ev["type"] in ("intent", "no_match"):
                return ev


def test_sighup_swaps_settings_between_utterances_and_refuses_a_broken_config(
        compact_model: Path, synth_data: Path, tmp_path: Path) -> None:
    wavs = sorted((synth_data / "test").glob("*.wav"))[:3]
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  top_k: 3\n")
    d = Daemon([sys.executable, "-m", "intentd.daemon", "--config", str(config), "--model",
                str(compact_model), "--input", "speaker=-", "--input-rate", str(SR)])
    d.wait_log(" ready: ")

    d.feed(_pcm(wavs[0]))
    first = d.verdict()
    assert (first["utterance_id"], len(first["top"])) == (0, 3)

    config.write_text("model:\n  top_k: 1\n")
    mark = len(d.stderr)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload: ", start=mark)
    assert "swapped in between utterances" in "".join(d.stderr[mark:])
    d.feed(_pcm(wavs[1]))
    second = d.verdict()
    assert (second["utterance_id"], second["stream"], len(second["top"])) == (1, "speaker", 1)

    config.write_text("model:\n  top_k: [1\n")  # a YAML error
    mark = len(d.stderr)
    d.proc.send_signal(signal.SIGHUP)
    line = d.wait_log("reload: ", start=mark)
    assert f"{config}:" in line and "the running settings and model stay" in line
    d.proc.send_signal(signal.SIGUSR1)
    status = json.loads(d.wait_log("status: ", start=mark).split("status: ", 1)[1])
    assert status["ready"] and status["streams"]["speaker"]["state"] == "running"
    d.feed(_pcm(wavs[2]))
    third = d.verdict()
    assert (third["utterance_id"], len(third["top"])) == (2, 1)

    assert d.proc.stdin is not None
    d.proc.stdin.close()
    assert d.proc.wait(timeout=60) == 0
    assert not any("Traceback" in line for line in d.stderr)


def test_check_config_validates_settings_and_model(compact_model: Path, tmp_path: Path) -> None:
    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "intentd.daemon", "--check-config", *args],
                              env=_env(), capture_output=True, text=True, timeout=120)

    ok = check("--model", str(compact_model))
    assert ok.returncode == 0, ok.stderr
    assert "is valid; model" in ok.stderr and "3 labels" in ok.stderr
    assert "Loading weights" not in ok.stderr  # no progress bars in a log
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  threshhold: 0.5\n")
    got = check("--config", str(bad), "--model", str(compact_model))
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1] == (
        f"intentd: error: {bad}:2: unknown key model.threshhold; did you mean model.threshold?")
    missing = check("--model", str(tmp_path / "none"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _call(synth_data: Path, out: Path, n: int = 3) -> Path:
    parts = [np.frombuffer(_pcm(w), "<i2") for w in sorted((synth_data / "test").glob("*.wav"))[:n]]
    sf.write(out, np.concatenate(parts), SR, subtype="PCM_16")
    return out


def test_a_full_disk_on_stdout_is_one_line_and_exit_1(compact_model: Path, synth_data: Path,
                                                      tmp_path: Path) -> None:
    wav = _call(synth_data, tmp_path / "call.wav")
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "intentd.daemon", "--model", str(compact_model),
                            "--input", str(wav), "--no-realtime"], env=_env(), stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(
        "stdout: cannot write events to stdout (No space left on device); no more events go "
        "to stdout")
    assert "Traceback" not in p.stderr


def test_a_reader_that_goes_away_stops_the_daemon_with_0(compact_model: Path, synth_data: Path,
                                                         tmp_path: Path) -> None:
    wav = _call(synth_data, tmp_path / "call.wav")
    p = subprocess.Popen([sys.executable, "-m", "intentd.daemon", "--model", str(compact_model),
                          "--input", str(wav)], env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # paced like a live source
    assert p.stdout is not None
    first = json.loads(p.stdout.readline())  # `| head -1`
    assert first["type"] in ("intent", "no_match")
    p.stdout.close()
    assert p.wait(timeout=60) == 0
    err = p.stderr.read() if p.stderr else ""
    assert "the reader closed the pipe" in err and "no output is left" in err
    assert "Traceback" not in err
