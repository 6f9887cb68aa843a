"""CPU and memory of many streams in one process against one process per stream.

Generates N calls (held-out voices, ``intentd-train democall``, a third of them at 8 kHz),
then measures, in this one run, with ``intentd --no-realtime``:

- ``one process``: all N calls as N ``--input`` streams of one daemon;
- ``N processes``: each call in its own daemon, one after another (CPU summed, RSS max);
- CPU per second of speech with windows classified (``output.window_events: true``, the
  work every utterance cost when each 1 s window went through the model) and without
  (the default ``utterance`` verdict runs the utterance pass alone);
- optionally the same for an older checkout (``--old-checkout DIR``, run as
  ``python -m daemon`` from that directory).

CPU is user + system time of the daemon process (``os.wait4``), the minimum over
``--repeats`` runs (these machines are noisy); per second of speech it is net of start-up
(a run on 1 s of silence: imports and model load), with speech seconds from the calls' truth
spans. Prints a table and one JSON line.

    .venv/bin/python bench/multistream.py --model demo/model --out /tmp/ms
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _best(cmd: list[str], repeats: int, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> dict[str, Any]:
    """The run with the least CPU of ``repeats``."""
    return min((_run(cmd, cwd, env) for _ in range(repeats)), key=lambda r: r["cpu_s"])


def _run(cmd: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a daemon; its CPU seconds, peak RSS (MB) and verdict events."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n"
                             + err.read().decode()[-2000:])
        out.seek(0)
        events = [json.loads(x) for x in out.read().decode().splitlines() if x.strip()]
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "verdicts": [e for e in events if e["type"] in ("intent", "no_match")]}


def _speech_s(truth: Path) -> float:
    with truth.open(newline="") as f:
        return sum(float(r["end_s"]) - float(r["start_s"]) for r in csv.DictReader(f))


def make_calls(spec: Path, out: Path, n: int, utterances: int) -> list[tuple[Path, Path]]:
    import soundfile as sf
    import soxr

    from intentd.trainer.synthesis.democall import make_call

    calls = []
    for k in range(n):
        wav, truth = out / f"call{k}.wav", out / f"call{k}.csv"
        if not wav.exists():
            make_call(spec, wav, truth, n_utterances=utterances, seed=1000 + k)
            if k % 3 == 1:  # a phone line
                audio, sr = sf.read(str(wav), dtype="float32")
                sf.write(str(wav), soxr.resample(audio, sr, 8000, quality="HQ"), 8000,
                         subtype="PCM_16")
        calls.append((wav, truth))
    return calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--spec", type=Path, default=REPO / "examples/intents/banking.yaml")
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--utterances", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-checkout", type=Path,
                   help="an older checkout whose daemon is `python -m daemon`")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    calls = make_calls(args.spec, args.out, args.calls, args.utterances)
    speech_s = sum(_speech_s(t) for _, t in calls)
    base = [sys.executable, "-m", "intentd.daemon", "--config", str(REPO / "config.yaml"),
            "--model", str(args.model.resolve()), "--no-realtime"]
    windows_cfg = args.out / "window_events.yaml"
    windows_cfg.write_text((REPO / "config.yaml").read_text().replace(
        "window_events: false", "window_events: true"))
    inputs = [a for k, (wav, _) in enumerate(calls) for a in ("--input", f"line{k}={wav}")]

    silence = args.out / "silence_1s.wav"
    import numpy as np
    import soundfile as sf

    sf.write(str(silence), np.zeros(16000, np.float32), 16000)
    r = args.repeats
    startup = _best([*base, "--input", str(silence)], r)
    one = _best(base + inputs, r)
    each = [_best([*base, "--input", str(wav)], r) for wav, _ in calls]
    win_base = [a if a != str(REPO / "config.yaml") else str(windows_cfg) for a in base]
    windows = _best(win_base + inputs, r)
    rows = {
        "start-up alone (1 s of silence)": (startup["cpu_s"], startup["rss_mb"]),
        f"{len(calls)} calls, one process": (one["cpu_s"], one["rss_mb"]),
        f"{len(calls)} calls, {len(calls)} processes": (sum(r["cpu_s"] for r in each),
                                                        max(r["rss_mb"] for r in each)),
        "one process, every window classified": (windows["cpu_s"], windows["rss_mb"]),
    }

    def per_speech_s(cpu: float) -> float:
        return round(1000 * (cpu - startup["cpu_s"]) / speech_s, 1)

    result: dict[str, Any] = {
        "calls": len(calls), "speech_s": round(speech_s, 1), "repeats": r,
        "startup_cpu_s": round(startup["cpu_s"], 2),
        "one_process_cpu_s": round(one["cpu_s"], 2),
        "separate_processes_cpu_s": round(rows[list(rows)[2]][0], 2),
        "one_process_rss_mb": round(one["rss_mb"]),
        "per_process_rss_mb": round(max(r["rss_mb"] for r in each)),
        "cpu_ms_per_speech_s": per_speech_s(one["cpu_s"]),
        "cpu_ms_per_speech_s_windows_classified": per_speech_s(windows["cpu_s"]),
        "verdicts": len(one["verdicts"]),
    }
    if args.old_checkout:
        old_cmd = [sys.executable, "-m", "daemon", "--config",
                   str(args.old_checkout.resolve() / "config.yaml"),
                   "--model", str(args.model.resolve()), "--no-realtime"]
        env = dict(os.environ, PYTHONPATH=str(args.old_checkout.resolve()))
        old = [_best([*old_cmd, "--input", str(wav.resolve())], r, cwd=args.old_checkout,
                     env=env) for wav, _ in calls]
        old_cpu = sum(r["cpu_s"] for r in old)
        rows[f"older checkout, {len(calls)} processes"] = (old_cpu,
                                                          max(r["rss_mb"] for r in old))
        result["old_checkout_cpu_s"] = round(old_cpu, 2)
    print(f"{'run':48s} {'CPU s':>8s} {'peak RSS MB':>12s}")
    for name, (cpu, rss) in rows.items():
        print(f"{name:48s} {cpu:8.2f} {rss:12.0f}")
    print(f"speech in the calls: {speech_s:.1f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
