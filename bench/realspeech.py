"""Sim-to-real check on the real coffee orders in ../shared/realspeech (never committed).

Builds one long 16 kHz stream from the recordings (each file followed by 2 s of silence), runs
the daemon on it through the exact streaming path (``intentd --no-realtime``) once per verdict
rule, and scores the events against the files' drink labels with overlap matching
(intentd.daemon.score). Also reports how many recordings the VAD split into more than one utterance.

Usage: python bench/realspeech.py --model MODEL_DIR [--data ../shared/realspeech]
Labels: the coffeeDrink slot, spaces → underscores ("drip coffee" → drip_coffee).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from intentd.daemon.audio.windowing import preprocess
from intentd.daemon.score import Span, read_events, read_truth, summarize

RATE_HZ = 16000
GAP_S = 2.0


def build_stream(data: Path, workdir: Path) -> tuple[Path, Path, int]:
    labels = json.loads((data / "labels.json").read_text())
    parts, rows, t = [], [], 0.0
    gap = np.zeros(int(GAP_S * RATE_HZ), dtype=np.float32)
    parts.append(gap)
    t += GAP_S
    for name in sorted(labels):
        audio, sr = sf.read(data / "wav" / name, dtype="float32", always_2d=True)
        a = preprocess(audio, sr, RATE_HZ)
        drink = labels[name]["slots"]["coffeeDrink"].strip().replace(" ", "_")
        rows.append((round(t, 3), round(t + a.size / RATE_HZ, 3), drink, name))
        parts += [a, gap]
        t += a.size / RATE_HZ + GAP_S
    wav, truth = workdir / "real.wav", workdir / "real.csv"
    sf.write(wav, np.concatenate(parts), RATE_HZ, subtype="PCM_16")
    with truth.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s", "intent", "text"])
        w.writerows(rows)
    return wav, truth, len(rows)


def _overlaps(span: Span, event: dict[str, object]) -> bool:
    return float(event["start_s"]) < span.end_s and float(event["end_s"]) > span.start_s


def split_count(truth_path: Path, events: list[dict[str, object]]) -> int:
    """Recordings overlapped by more than one event (the VAD cut one command in pieces)."""
    spans = read_truth(truth_path)
    n = 0
    for s in spans:
        hits = [e for e in events if _overlaps(s, e)]
        n += len(hits) > 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "realspeech"
    ap.add_argument("--data", default=str(default_data))
    ap.add_argument("--verdicts", nargs="+", default=["utterance", "mean", "max"])
    ap.add_argument("--config", default="config.yaml")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav, truth, n = build_stream(Path(args.data), Path(tmp))
        results = {}
        for verdict in args.verdicts:
            out = Path(tmp) / f"events-{verdict}.jsonl"
            cmd = [sys.executable, "-m", "intentd.daemon", "--config", args.config,
                   "--model", args.model, "--input", str(wav), "--no-realtime",
                   "--verdict", verdict, "--threshold", "0"]
            with out.open("w") as f:
                subprocess.run(cmd, stdout=f, check=True)
            events = read_events(out)
            s = summarize(read_truth(truth), events)
            s["recordings_split"] = split_count(truth, events)
            results[verdict] = s
            print(f"{verdict:10s} {json.dumps(s)}", file=sys.stderr)
    print(json.dumps({"recordings": n, "by_verdict": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
