"""Where a compact model's held-out errors come from: new phrasings, new voices, or both.

Takes a trained model and the ``synth`` data set it was trained on, draws commands from its
train and test splits (``_none`` left out), re-renders each text with eSpeak in a voice from
the training side or from the held-out side of the synth voice split (fresh rate/pitch
jitter, the synth's lead/tail room, no augmentation), and scores them with the daemon's
utterance scorer, in four cells:

=====================  =======================  ==========================
text                   voice                    what it measures
=====================  =======================  ==========================
training sentence      random training voice    the same words, a new rendering
training sentence      held-out voice           new voice alone
test sentence          training voice           new phrasing alone
test sentence          held-out voice           both (what the test split measures)
=====================  =======================  ==========================

plus the training audio itself, as written by synth (what the model has memorised). A large
gap between the training audio and the first cell means the head learned renderings rather
than words; a gap between rows means more phrasings (templates, ``--per-intent``) would
help, between columns more voices. Writes JSON to stdout.

Usage: python bench/generalization.py --model DIR --data DIR [--n 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from intentd.daemon.model.backend import ModelBackend


def _rows(data: Path, split: str) -> list[dict[str, str]]:
    from intentd.daemon.output.events import REJECT_LABEL

    with open(data / split / "metadata.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["label"] != REJECT_LABEL]


def _accuracy(backend: ModelBackend, audios: list[np.ndarray], labels: list[str]) -> float:
    correct = 0
    for audio, label in zip(audios, labels, strict=True):
        scorer = backend.utterance_scorer()
        scorer.push(audio)
        correct += int(backend.labels[int(np.argmax(scorer.result()))] == label)
    return round(100.0 * correct / max(1, len(labels)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="the synth data dir")
    parser.add_argument("--n", type=int, default=300, help="commands per cell")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from intentd.daemon.errors import IntentdError
    from intentd.daemon.model.loader import load_backend
    from intentd.trainer.synthesis import tts_espeak
    from intentd.trainer.synthesis.synth import LEAD_TAIL_S
    from intentd.trainer.synthesis.synth_plan import split_speakers

    if not (args.data / "spec.json").is_file():
        parser.error(f"--data {args.data}: no spec.json; pass a data dir made by "
                     "'intentd-train synth'")
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    spec = json.loads((args.data / "spec.json").read_text())
    opts = spec["options"]
    rate = int(spec["sample_rate_hz"])
    train_sp, test_sp = split_speakers(int(opts["seed"]), float(opts["test_fraction"]),
                                       tuple(opts["train_accents"]), tuple(opts["test_accents"]))
    try:
        backend = load_backend(args.model, threads=2)
    except IntentdError as err:
        parser.error(str(err))
    rng = random.Random(args.seed)
    pools = {split: _rows(args.data, split) for split in ("train", "test")}
    smallest = min(len(rows) for rows in pools.values())
    if args.n > smallest:
        parser.error(f"--n {args.n}: the data has only {smallest} commands in a split; "
                     f"use --n {smallest} or less")
    train_rows = rng.sample(pools["train"], args.n)
    test_rows = rng.sample(pools["test"], args.n)

    def render(rows: list[dict[str, str]], voices: list[tts_espeak.EspeakSpeaker]
               ) -> list[np.ndarray]:
        out = []
        for i, row in enumerate(rows):
            r = random.Random(f"{args.seed}:{i}:{row['file_name']}")
            speaker = voices[r.randrange(len(voices))]
            speech = tts_espeak.speak(row["text"], speaker, r, rate)
            lead, tail = (np.zeros(int(r.uniform(*LEAD_TAIL_S) * rate), np.float32)
                          for _ in range(2))
            out.append(np.concatenate([lead, speech, tail]))
        return out

    train_labels = [r["label"] for r in train_rows]
    test_labels = [r["label"] for r in test_rows]
    stored = [sf.read(args.data / "train" / r["file_name"], dtype="float32")[0]
              for r in train_rows]
    report = {
        "model": str(args.model), "data": str(args.data), "per_cell": args.n,
        "training_audio": _accuracy(backend, stored, train_labels),
        "train_sentence_train_voice": _accuracy(backend, render(train_rows, train_sp),
                                                train_labels),
        "train_sentence_heldout_voice": _accuracy(backend, render(train_rows, test_sp),
                                                  train_labels),
        "test_sentence_train_voice": _accuracy(backend, render(test_rows, train_sp),
                                               test_labels),
        "test_sentence_heldout_voice": _accuracy(backend, render(test_rows, test_sp),
                                                 test_labels),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
