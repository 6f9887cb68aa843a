"""How accuracy holds up on a kind of voice never heard in training.

Synthesizes ``SPEC`` with training voices from some eSpeak accents only (default: the two
American ones) and held-out test variants spoken in *every* accent, trains the compact model,
then scores each test utterance with the daemon's own utterance scorer and groups accuracy by
accent: the accents seen in training against those never seen. Writes ``OUT/unseen_kind.json``
and ``OUT/unseen_kind.md``.

Usage: python bench/unseen_kind.py [--spec examples/intents/banking.yaml] [--out DIR]
       [--train-accents en-us,en-us-nyc] [--per-intent N] [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def score_by_accent(model_dir: Path, data_dir: Path) -> dict[str, tuple[int, int]]:
    """accent -> (correct, total) over DATA/test, through the daemon's utterance scorer."""
    from intentd.daemon.model.loader import load_backend
    from intentd.daemon.output.events import REJECT_LABEL

    backend = load_backend(model_dir, threads=2)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with open(data_dir / "test" / "metadata.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["label"] == REJECT_LABEL:
                continue  # babble and noise have no accent; accuracy here is over commands
            audio, sr = sf.read(data_dir / "test" / row["file_name"], dtype="float32")
            assert sr == backend.sample_rate_hz
            scorer = backend.utterance_scorer()
            scorer.push(audio)
            label = backend.labels[int(np.argmax(scorer.result()))]
            accent = row["voice"].split(":")[1].split("+")[0]
            tally[accent][0] += label == row["label"]
            tally[accent][1] += 1
    return {a: (c, n) for a, (c, n) in sorted(tally.items())}


def summarize(tally: dict[str, tuple[int, int]], seen: set[str]) -> dict[str, object]:
    def acc(keys: list[str]) -> float:
        c = sum(tally[k][0] for k in keys)
        n = sum(tally[k][1] for k in keys)
        return round(c / n, 4) if n else float("nan")

    seen_keys = [a for a in tally if a in seen]
    unseen_keys = [a for a in tally if a not in seen]
    return {
        "train_accents": sorted(seen),
        "seen_kind_accuracy": acc(seen_keys),
        "unseen_kind_accuracy": acc(unseen_keys),
        "by_accent": {a: {"accuracy": acc([a]), "n": tally[a][1], "seen": a in seen}
                      for a in tally},
    }


def markdown(summary: dict[str, object]) -> str:
    lines = ["| accent | seen in training | n | accuracy |", "|---|---|---|---|"]
    by_accent = summary["by_accent"]
    assert isinstance(by_accent, dict)
    for accent, row in by_accent.items():
        lines.append(f"| {accent} | {'yes' if row['seen'] else 'no'} | {row['n']} | "
                     f"{row['accuracy']:.1%} |")
    lines.append(f"| **seen kinds** | yes | | **{summary['seen_kind_accuracy']:.1%}** |")
    lines.append(f"| **unseen kinds** | no | | **{summary['unseen_kind_accuracy']:.1%}** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default=str(ROOT / "examples/intents/banking.yaml"))
    p.add_argument("--out", default="bench-out/unseen-kind")
    p.add_argument("--train-accents", default="en-us,en-us-nyc")
    p.add_argument("--per-intent", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    out = Path(a.out)
    data, model = out / "data", out / "model"
    _run([str(BIN / "intentd-train"), "synth", a.spec, "--out", str(data), "--force",
          "--seed", str(a.seed), "--per-intent", str(a.per_intent),
          "--train-accents", a.train_accents, "--no-progress"])
    _run([str(BIN / "intentd-train"), "fit", "--data", str(data), "--model", "compact",
          "--out", str(model)])
    seen = {s.strip() for s in a.train_accents.split(",") if s.strip()}
    summary = summarize(score_by_accent(model, data), seen)
    (out / "unseen_kind.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "unseen_kind.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
