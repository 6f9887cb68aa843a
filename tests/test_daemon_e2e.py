"""End to end: the real daemon process on a synthetic call with a trained compact model.

One call WAV (held-out voices, silence and noise gaps, some internal pauses) is run through
``python -m intentd.daemon`` from a file (16 kHz and 8 kHz), from stdin, through a PortAudio/ALSA
fake microphone, and with unix-socket clients; the events are checked against the truth.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_UTTERANCES = 10
MIN_ACCURACY = 0.9
MAX_BOUNDARY_ERR_S = 0.15
STARTUP_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- helpers


def _env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if home is not None:
        env["HOME"] = str(home)
    return env


def _cmd(model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "intentd.daemon", "--model", str(model), *args]


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _verdicts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] in ("intent", "no_match")]


def _read_truth(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return [{"start_s": float(r["start_s"]), "end_s": float(r["end_s"]),
                 "intent": r["intent"]} for r in csv.DictReader(f)]


def _check(events: list[dict[str, Any]], truth: list[dict[str, Any]],
           what: str) -> dict[str, float]:
    """Exactly one verdict per truth utterance, in order, accurate labels and boundaries."""
    verdicts = _verdicts(events)
    assert len(verdicts) == len(truth), (
        f"{what}: {len(verdicts)} verdicts for {len(truth)} utterances: "
        f"{[(v['start_s'], v['end_s']) for v in verdicts]} vs "
        f"{[(t['start_s'], t['end_s']) for t in truth]}")
    assert [v["utterance_id"] for v in verdicts] == sorted(v["utterance_id"] for v in verdicts)
    correct = sum(v["type"] == "intent" and v["intent"] == t["intent"]
                  for v, t in zip(verdicts, truth, strict=True))
    start_err = [v["start_s"] - t["start_s"] for v, t in zip(verdicts, truth, strict=True)]
    end_err = [v["end_s"] - t["end_s"] for v, t in zip(verdicts, truth, strict=True)]
    stats = {
        "accuracy": correct / len(truth),
        "max_start_err_s": max(start_err, key=abs),
        "max_end_err_s": max(end_err, key=abs),
        "latency_ms_median": float(np.median([v["latency_ms"] for v in verdicts])),
    }
    print(f"{what}: {stats}")
    assert stats["accuracy"] >= MIN_ACCURACY, (what, stats)
    assert abs(stats["max_start_err_s"]) <= MAX_BOUNDARY_ERR_S, (what, start_err)
    assert abs(stats["max_end_err_s"]) <= MAX_BOUNDARY_ERR_S, (what, end_err)
    return stats


class _Daemon:
    """A running daemon; threads drain stdout and stderr so neither pipe fills up."""

    def __init__(self, cmd: list[str], env: dict[str, str], stdin: Any = subprocess.DEVNULL,
                 watch_stdout: bool = True) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.running = threading.Event()
        threading.Thread(target=self._watch_stderr, daemon=True).start()
        if watch_stdout:
            threading.Thread(target=self._watch_stdout, daemon=True).start()

    def _watch_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if " ready: " in line:
                self.running.set()

    def _watch_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_running(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.running.wait(0.1):
            assert self.proc.poll() is None, "daemon died:\n" + "".join(self.stderr)
            assert time.monotonic() < deadline, "daemon did not start:\n" + "".join(self.stderr)

    def read_events(self, n: int, timeout_s: float) -> list[dict[str, Any]]:
        """Stdout events until ``n`` verdicts have arrived."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(_verdicts(events)) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(events)} events:\n" + "".join(self.stderr[-20:])
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            assert line is not None, "daemon closed stdout:\n" + "".join(self.stderr[-20:])
            events.append(json.loads(line))
        return events

    def terminate_timed(self) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        return rc, time.monotonic() - t0


def _run(cmd: list[str], env: dict[str, str], stdin: bytes | None = None,
         timeout_s: float = 600) -> list[dict[str, Any]]:
    p = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=timeout_s)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    return _events(p.stdout.decode())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory, tiny_spec: Any) -> dict[str, Path]:
    democall = pytest.importorskip("intentd.trainer.synthesis.democall")
    d = tmp_path_factory.mktemp("call")
    wav, truth = d / "call.wav", d / "call.csv"
    democall.make_call(tiny_spec, wav, truth, n_utterances=N_UTTERANCES, seed=0)
    audio, rate = sf.read(str(wav), dtype="float32")
    assert rate == 16000
    import soxr

    wav8k = d / "call8k.wav"
    sf.write(str(wav8k), soxr.resample(audio, 16000, 8000, quality="HQ"), 8000,
             subtype="PCM_16")
    raw = d / "call.raw"
    raw.write_bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return {"dir": d, "wav": wav, "wav8k": wav8k, "truth": truth, "raw": raw}


@pytest.fixture(scope="module")
def file_events(call: dict[str, Path], compact_model: Any) -> list[dict[str, Any]]:
    return _run(_cmd(Path(compact_model), "--input", str(call["wav"]), "--no-realtime"),
                _env())


# --------------------------------------------------------------------------- tests


def test_file_input(call: dict[str, Path], file_events: list[dict[str, Any]]) -> None:
    _check(file_events, _read_truth(call["truth"]), "file 16 kHz")


def test_file_input_8khz(call: dict[str, Path], compact_model: Any) -> None:
    events = _run(_cmd(Path(compact_model), "--input", str(call["wav8k"]), "--no-realtime"),
                  _env())
    _check(events, _read_truth(call["truth"]), "file 8 kHz")


def test_ensemble_model(call: dict[str, Path], compact_model: Any,
                        file_events: list[dict[str, Any]], tmp_path: Path) -> None:
    """An ensemble dir runs like any model: the fixture model with a copy of itself at twice
    its score temperature ranks every label as the model alone (the same top lists and
    boundaries), with scores between the two members' (so no higher than the model's alone)."""
    from intentd.trainer.tuning.ensemble_cli import build_ensemble

    hot = tmp_path / "hot"
    shutil.copytree(compact_model, hot)
    cfg = json.loads((hot / "config.json").read_text())
    cfg["score_temperature"] = 2 * cfg.get("score_temperature", 1.0)
    (hot / "config.json").write_text(json.dumps(cfg))
    build_ensemble([Path(compact_model), hot], tmp_path / "pair")
    events = _verdicts(_run(_cmd(tmp_path / "pair", "--input", str(call["wav"]),
                                 "--no-realtime"), _env()))
    alone = _verdicts(file_events)
    assert len(events) == len(alone) and {e["model"] for e in events} == {"pair"}
    for e, a in zip(events, alone, strict=True):
        assert (e["start_s"], e["end_s"]) == (a["start_s"], a["end_s"])
        assert [t["intent"] for t in e["top"]] == [t["intent"] for t in a["top"]]
        assert e["top"][0]["score"] <= a["top"][0]["score"]  # (both 1.0 when certain)
    assert sum(e["top"][0]["score"] for e in events) < sum(a["top"][0]["score"] for a in alone)


def test_stdin_with_unix_socket_clients(call: dict[str, Path], compact_model: Any,
                                        file_events: list[dict[str, Any]]) -> None:
    """Raw s16le on stdin gives the file's events; a stuck socket client hurts nobody."""
    sock_path = call["dir"] / "events.sock"
    d = _Daemon(_cmd(Path(compact_model), "--input", "-", "--input-rate", "16000",
                     "--output", "stdout", "--output", f"unix:{sock_path}"),
                _env(), stdin=subprocess.PIPE, watch_stdout=False)
    d.wait_running()
    good = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    good.connect(str(sock_path))
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.connect(str(sock_path))  # never reads
    time.sleep(0.5)  # let the daemon accept both before any event exists
    assert d.proc.stdin is not None
    d.proc.stdin.buffer.write(call["raw"].read_bytes())
    d.proc.stdin.close()
    assert d.proc.stdout is not None
    out = d.proc.stdout.read()
    assert d.proc.wait(timeout=600) == 0, "".join(d.stderr[-30:])
    received = b""
    good.settimeout(10)
    while chunk := good.recv(1 << 16):
        received += chunk
    good.close()
    stuck.close()
    stdout_events = _events(out)
    assert received.decode().splitlines() == out.splitlines()
    key = [(e["type"], e.get("intent"), e["start_s"], e["end_s"]) for e in stdout_events]
    assert key == [(e["type"], e.get("intent"), e["start_s"], e["end_s"]) for e in file_events]
    assert not sock_path.exists()


def test_sigterm_during_realtime_run_exits_0_quickly(call: dict[str, Path],
                                                      compact_model: Any) -> None:
    d = _Daemon(_cmd(Path(compact_model), "--input", str(call["wav"]), "--realtime"), _env())
    d.wait_running()
    time.sleep(3.0)  # inside the first utterance or its gap
    rc, took = d.terminate_timed()
    assert rc == 0, "".join(d.stderr[-20:])
    assert took < 2.0, f"exit took {took:.2f} s"
    assert any("summary:" in line for line in d.stderr)


_ASOUNDRC = ('pcm.fakemic {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
             '  infile "{infile}"\n  format "raw"\n}}\n')


def _portaudio_rate(tmp_path: Path) -> int:
    """The rate PortAudio opens the fake mic at (its default), probed on a plain file."""
    home = tmp_path / "probe-home"
    home.mkdir()
    (home / "empty.raw").write_bytes(b"")
    (home / ".asoundrc").write_text(_ASOUNDRC.format(infile=home / "empty.raw"))
    probe = subprocess.run(
        [sys.executable, "-c", "import sounddevice as sd; "
         "print(int(sd.query_devices('fakemic', 'input')['default_samplerate']))"],
        env=_env(home), capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"PortAudio/ALSA not usable: {probe.stderr.strip()[-300:]}")
    return int(probe.stdout.strip())


@pytest.fixture()
def fake_mic(call: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """An ALSA ``file`` PCM whose ``infile`` is the call as raw s16le at PortAudio's rate.

    The ``null`` slave has no clock, so the file (then endless silence) is captured at CPU
    speed, not in real time. The daemon therefore gets a capture queue that holds the whole
    call plus the silence its last utterance needs: the call is never dropped, only later
    silence overflows (counted and logged, as for a real microphone that falls behind).
    """
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        pytest.skip(f"PortAudio library missing (apt-get install libportaudio2): {exc}")
    rate = _portaudio_rate(tmp_path)
    import soxr

    audio, _ = sf.read(str(call["wav"]), dtype="float32")
    raw = tmp_path / "mic.raw"
    raw.write_bytes(
        (np.clip(soxr.resample(audio, 16000, rate), -1, 1) * 32767).astype("<i2").tobytes())
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(_ASOUNDRC.format(infile=raw))
    block_ms = 100
    tail_s = 10.0  # > hangover + pads after the last word, with margin
    config = tmp_path / "config.yaml"
    config.write_text(
        "input:\n  source: mic:fakemic\n"
        f"  block_ms: {block_ms}\n"
        f"  queue_blocks: {int((len(audio) / 16000 + tail_s) * 1000 / block_ms)}\n")
    return {"home": home, "config": config}


def test_fake_microphone(call: dict[str, Path], compact_model: Any,
                         file_events: list[dict[str, Any]],
                         fake_mic: dict[str, Path]) -> None:
    """The call captured through PortAudio/ALSA gives the file run's intents."""
    truth = _read_truth(call["truth"])
    d = _Daemon(_cmd(Path(compact_model), "--config", str(fake_mic["config"])),
                _env(fake_mic["home"]))
    d.wait_running()
    duration = sf.info(str(call["wav"])).duration
    events = d.read_events(len(truth), timeout_s=duration + 60)
    rc, took = d.terminate_timed()
    assert rc == 0, "".join(d.stderr[-20:])
    assert took < 2.0, f"exit took {took:.2f} s"
    assert any("summary:" in line for line in d.stderr)
    mic = _verdicts(events)
    ref = _verdicts(file_events)
    print("fake mic:", [(v["start_s"], v.get("intent")) for v in mic],
          "\nfile:    ", [(v["start_s"], v.get("intent")) for v in ref],
          "\n", "".join(line for line in d.stderr if "summary:" in line))
    assert len(mic) == len(ref) == len(truth)
    labels = [v.get("intent") for v in mic]
    ref_labels = [v.get("intent") for v in ref]
    if labels != ref_labels:
        # Resampling to the device rate and back may flip one marginal verdict, no more.
        same = sum(a == b for a, b in zip(labels, ref_labels, strict=True))
        correct = sum(v["type"] == "intent" and v["intent"] == t["intent"]
                      for v, t in zip(mic, truth, strict=True))
        assert min(same, correct) / len(truth) >= MIN_ACCURACY, (labels, ref_labels)
    start_err = [a["start_s"] - b["start_s"] for a, b in zip(mic, ref, strict=True)]
    assert max(map(abs, start_err)) <= MAX_BOUNDARY_ERR_S, start_err
