"""Soak: a long run of mixed speech, noise and silence through several streams of one
``intentd`` process at full speed, watching its memory, twice, comparing the events.

Each stream is a generated call (``intentd-train democall``: held-out voices, pauses,
background noise) followed by noise-only and silent stretches, repeated to ``--minutes`` of
audio per stream. The daemon's RSS is sampled every second (from /proc); the growth from the
``--settle`` fraction of the run to its end must stay under 5%. A second, identical run must
give the same events (type, intent, stream, times, score to 1e-4). Prints one JSON object.

Usage: python bench/soak.py --model M --spec examples/intents/banking.yaml [--minutes 60]
       [--streams 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE_HZ = 16000


def build_stream(spec: str, seed: int, minutes: float, workdir: Path) -> Path:
    from intentd.trainer.synthesis import augment
    from intentd.trainer.synthesis.democall import make_call

    call = workdir / f"call{seed}.wav"
    make_call(spec, call, workdir / f"call{seed}.csv", n_utterances=20, seed=seed)
    speech, _ = sf.read(call, dtype="float32")
    rng = np.random.default_rng(seed)
    noise = 0.05 * augment.make_noise("pink", 60 * RATE_HZ, rng, RATE_HZ)
    silence = np.zeros(30 * RATE_HZ, np.float32)
    piece = np.concatenate([speech, noise.astype(np.float32), silence])
    reps = int(np.ceil(minutes * 60 * RATE_HZ / piece.size))
    out = workdir / f"soak{seed}.wav"
    sf.write(out, np.tile(piece, reps)[: int(minutes * 60 * RATE_HZ)], RATE_HZ,
             subtype="PCM_16")
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def run(model: str, wavs: list[Path], out: Path
        ) -> tuple[list[dict], list[tuple[float, float]], float]:
    """The events, (seconds, RSS MB) samples and the seconds until the daemon was ready."""
    cmd = [sys.executable, "-m", "intentd.daemon", "--model", model, "--no-realtime"]
    for i, w in enumerate(wavs):
        cmd += ["--input", f"s{i}={w}"]
    samples: list[tuple[float, float]] = []
    ready = [0.0]
    with out.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()

        def log_lines() -> None:
            assert p.stderr is not None
            for line in p.stderr:
                if " ready: " in line and not ready[0]:
                    ready[0] = time.monotonic() - t0

        threading.Thread(target=log_lines, daemon=True).start()

        def watch() -> None:
            while p.poll() is None:
                try:
                    samples.append((time.monotonic() - t0, rss_mb(p.pid)))
                except OSError:
                    break
                time.sleep(1.0)

        watcher = threading.Thread(target=watch)
        watcher.start()
        code = p.wait()
        watcher.join()
    if code != 0:
        raise SystemExit(f"intentd exited {code}")
    events = [json.loads(line) for line in out.read_text().splitlines()]
    return events, samples, ready[0]


def key(e: dict) -> tuple:
    return (e["type"], e.get("intent"), e["stream"], e.get("start_s"), e.get("end_s"))


def per_stream(events: list[dict]) -> list[dict]:
    """Events in stream order: streams interleave differently from run to run."""
    return sorted(events, key=lambda e: (e["stream"], e.get("utterance_id", -1), e["type"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--spec", required=True, help="the model's intent spec (for the calls)")
    ap.add_argument("--minutes", type=float, default=60.0, help="audio per stream")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--settle", type=float, default=5 / 60,
                    help="share of the run before memory is the baseline (5 min of an hour)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    wavs = [build_stream(args.spec, seed, args.minutes, work) for seed in range(args.streams)]
    events, rss, ready_s = run(args.model, wavs, work / "events1.jsonl")
    (work / "rss.json").write_text(json.dumps(rss))  # (seconds, MB), for a plot
    again, _, _ = run(args.model, wavs, work / "events2.jsonl")
    wall = rss[-1][0] if rss else 0.0
    # The baseline: after the settling share of the run, and never before the daemon is
    # ready and has run a few seconds (start-up loads the model).
    base = [m for t, m in rss if t >= max(args.settle * wall, ready_s + 3.0)]
    growth = (base[-1] - base[0]) / base[0] if len(base) > 1 else None
    same = len(events) == len(again) and all(
        key(a) == key(b) and abs(a.get("score", 0) - b.get("score", 0)) <= 1e-4
        for a, b in zip(per_stream(events), per_stream(again), strict=True))
    verdicts = [e for e in events if e["type"] in ("intent", "no_match")]
    print(json.dumps({
        "streams": args.streams, "audio_minutes_per_stream": args.minutes,
        "wall_s": round(wall, 1),
        "x_realtime": round(args.streams * args.minutes * 60 / wall, 1) if wall else None,
        "events": len(events), "verdicts": len(verdicts),
        "rss_mb_start": round(base[0], 1) if base else None,
        "rss_mb_end": round(base[-1], 1) if base else None,
        "rss_mb_max": round(max(m for _, m in rss), 1) if rss else None,
        "rss_growth_after_settle": None if growth is None else round(growth, 4),
        "rss_growth_ok": None if growth is None else growth < 0.05,
        "second_run_identical": same}, indent=2))
    if growth is None:
        print("soak: the run was too short to measure memory after start-up; raise --minutes",
              file=sys.stderr)
        return 2
    return 0 if growth < 0.05 and same else 1


if __name__ == "__main__":
    sys.exit(main())
