"""Measurements behind ``bench/run.py``: the HF pipeline baseline, daemon runs at full speed
(CPU per second of audio) and at live pace (latency, idle CPU, start-up, RSS).

Every daemon runs in ``work`` (no ``config.yaml`` there, so the built-in defaults apply) as
``python -m intentd.daemon``; its CPU is user + system time of the process from ``os.wait4``
or ``/proc/PID/stat``, its RSS from ``/proc/PID/status``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
RATE_HZ = 16000


def stats(values: list[float]) -> dict[str, float]:
    """min and median: min is the least disturbed run on a noisy shared machine, the median
    shows how noisy it was."""
    return {"min": min(values), "median": statistics.median(values), "n": len(values)}


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int, key: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- models and audio


def save_w2v2_base(out: Path) -> Path:
    """wav2vec2-base's architecture (``Wav2Vec2Config()``) with random weights and a 2-class
    head: its cost does not depend on the weights, and nothing is downloaded."""
    if (out / "config.json").is_file():
        return out
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
        set_seed,
    )

    set_seed(0)
    config = Wav2Vec2Config(id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    Wav2Vec2ForSequenceClassification(config).save_pretrained(out)
    # wav2vec2-base's own extractor settings.
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE_HZ, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False).save_pretrained(out)
    return out


W2V2_BACKENDS = ("torch", "onnx", "onnx-int8")  # model.backend values of a window model


def export_window_model(model: Path, windows_from: Path) -> dict[str, Any]:
    """``intentd-train export`` of ``model`` (1 thread, agreement windows from
    ``windows_from``): its ``onnx/export.json``, kept for the next run."""
    record = model / "onnx" / "export.json"
    if not record.is_file():
        proc = subprocess.run([sys.executable, "-m", "intentd.trainer.cli", "export", "--model",
                               str(model), "--windows-from", str(windows_from)],
                              env=ENV, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"export failed: {proc.stderr[-2000:]}")
    return json.loads(record.read_text(encoding="utf-8"))


def build_compact(spec_text: str, work: Path) -> tuple[Path, Path]:
    """The tests' tiny spec -> synthetic speech -> compact model (head_channels 128), as
    tests/conftest.py builds it (~1-2 min on 2 cores). Kept in ``work`` for the next run."""
    from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit
    from intentd.trainer.synthesis.synth import SynthOptions, synthesize

    spec, data, model = work / "tiny.yaml", work / "tiny_data", work / "compact"
    spec.write_text(spec_text, encoding="utf-8")
    if (model / "config.json").is_file():
        return model, spec
    if not (data / "spec.json").is_file():
        synthesize(spec, data, SynthOptions(per_intent=40, piper_share=0.0, flite_share=0.0,
                                            reject_share=0.0, seed=0, progress=False))
    fit(DataArguments(data=str(data)), ModelArguments(model="compact", head_channels=128),
        TrainArguments(out=str(model), batch_size=32, seed=0))
    return model, spec


def make_call(spec: Path, work: Path, utterances: int, seed: int) -> tuple[Path, float, float]:
    """A generated 16 kHz call (held-out voices, background noise, 1.5-3 s pauses: with the
    banking spec's commands, speech about half of the time): its path, audio seconds and
    speech seconds (truth spans)."""
    from intentd.trainer.synthesis.democall import make_call as democall

    wav, truth = work / f"call_{utterances}_{seed}.wav", work / f"call_{utterances}_{seed}.csv"
    if not wav.exists():
        democall(spec, wav, truth, n_utterances=utterances, seed=seed)
    with truth.open(newline="") as f:
        speech = sum(float(r["end_s"]) - float(r["start_s"]) for r in csv.DictReader(f))
    return wav, sf.info(str(wav)).duration, speech


def make_background(work: Path, kind: str, seconds: float) -> Path:
    """``silence``: digital zeros; ``noise``: steady pink noise at about -36 dBFS RMS (a
    quiet room with a fan), below the VAD's trigger most of the time."""
    wav = work / f"{kind}_{seconds:g}s.wav"
    if not wav.exists():
        n = int(seconds * RATE_HZ)
        if kind == "silence":
            audio = np.zeros(n, np.float32)
        else:
            from intentd.trainer.synthesis import augment

            audio = augment.make_noise("pink", n, np.random.default_rng(0), RATE_HZ)
            audio = (0.016 * audio / (np.sqrt(np.mean(audio**2)) + 1e-9)).astype(np.float32)
        sf.write(str(wav), audio, RATE_HZ, subtype="PCM_16")
    return wav


# ---------------------------------------------------------------- (a) the pipeline baseline


def pipeline_cost(model_dir: Path, repeats: int, threads: int) -> dict[str, Any]:
    """HF ``pipeline("audio-classification")`` on one 1 s window: process CPU ms (all
    threads) and wall ms per call, 3 warm-up calls excluded."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    clf = pipeline("audio-classification", model=str(model_dir), device="cpu")
    window = (0.1 * np.random.default_rng(0).standard_normal(RATE_HZ)).astype(np.float32)
    for _ in range(3):
        clf(window.copy())
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        clf(window.copy())
        cpu.append(1000 * (time.process_time() - c0))
        wall.append(1000 * (time.perf_counter() - w0))
    return {"cpu_ms": stats(cpu), "wall_ms": stats(wall), "threads": threads}


# ---------------------------------------------------------------- daemon runs


def daemon_cmd(model: Path, inputs: list[Path], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "intentd.daemon", "--model", str(model), "--output", "stdout"]
    for k, wav in enumerate(inputs):
        cmd += ["--input", f"s{k}={wav}"]
    return cmd + list(extra)


def run_fast(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """A ``--no-realtime`` daemon to its end: (CPU seconds, peak RSS MB).

    Peak RSS is the daemon's VmHWM polled from /proc, not ``ru_maxrss``: that one keeps the
    high-water mark of the forked bench process (torch, the pipeline) across the exec."""
    hwm = 0.0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=ENV)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(OSError):  # it may exit between the two calls
                hwm = max(hwm, proc_rss_mb(proc.pid, "VmHWM"))
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"daemon failed: {' '.join(cmd)}\n{err.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, hwm


def cpu_per_audio(model: Path, wav: Path, audio_s: float, speech_s: float, work: Path,
                  repeats: int, *extra: str) -> dict[str, Any]:
    """Daemon CPU ms per second of streamed audio and per second of speech, through the real
    engine at full speed. Start-up (imports, model load, the warm-up pass) is excluded: the
    same daemon on 1 s of silence is subtracted, each side the least of ``repeats`` runs
    (pairing minima: both are the least-disturbed runs)."""
    silence = make_background(work, "silence", 1.0)
    start = [run_fast(daemon_cmd(model, [silence], "--no-realtime", *extra), work)
             for _ in range(repeats)]
    full = [run_fast(daemon_cmd(model, [wav], "--no-realtime", *extra), work)
            for _ in range(repeats)]
    base = min(c for c, _ in start)
    net = [max(0.0, c - base) for c, _ in full]
    return {"ms_per_audio_s": stats([1000 * c / audio_s for c in net]),
            "ms_per_speech_s": stats([1000 * c / speech_s for c in net]),
            "startup_cpu_s": base, "rss_mb": max(r for _, r in full),
            "audio_s": audio_s, "speech_s": speech_s}


def run_live(model: Path, wav: Path, work: Path, cpu_window: tuple[float, float] | None = None,
             ) -> dict[str, Any]:
    """One live-paced stream (the daemon's default real-time file pacing) to its end.

    Returns start -> ready seconds (the "ready:" log line), RSS a second after ready (one
    model loaded, one stream), the verdicts' ``latency_ms`` (the worker's clock from the
    end of speech, as the segmenter saw it after the hangover, to the event) and, with
    ``cpu_window=(skip_s, length_s)``, the daemon's CPU as % of one core over that window
    after ready (skipping the first stream blocks and the model's warm-up)."""
    out, err = work / "live.jsonl", work / "live.log"
    with out.open("wb") as fo, err.open("wb") as fe:
        t0 = time.monotonic()
        proc = subprocess.Popen(daemon_cmd(model, [wav]), stdout=fo, stderr=fe, cwd=work,
                                env=ENV)
    try:
        while "ready:" not in err.read_text(errors="replace"):
            if proc.poll() is not None:
                raise SystemExit(f"daemon exited: {err.read_text()[-2000:]}")
            time.sleep(0.02)
        ready_s = time.monotonic() - t0
        time.sleep(1.0)
        rss = proc_rss_mb(proc.pid)
        cpu_pct = None
        if cpu_window:
            time.sleep(max(0.0, cpu_window[0] - 1.0))
            c0, w0 = proc_cpu_s(proc.pid), time.monotonic()
            time.sleep(cpu_window[1])
            cpu_pct = 100 * (proc_cpu_s(proc.pid) - c0) / (time.monotonic() - w0)
            proc.send_signal(signal.SIGTERM)  # the rest of the file would add nothing
        proc.wait(sf.info(str(wav)).duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    latency = [float(e["latency_ms"]) for e in events
               if e.get("type") in ("intent", "no_match") and "latency_ms" in e]
    return {"ready_s": ready_s, "rss_mb": rss, "latency_ms": latency, "cpu_pct": cpu_pct}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]
