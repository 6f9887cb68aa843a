"""CPU per command of a slot model against the same model without its slot heads.

Each held-out command of a data set (the rejection class left out) goes through the
daemon's verdict path (the backend's ``score_many`` on one finished utterance: Whisper
encoder + head), once with the slot heads
and once with them removed (the intent-only model of the same weights), in alternating
order; the least of ``--repeats`` rounds of process CPU time is kept for each.

Usage: python bench/slot_cost.py --model M --data D [--n 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from intentd.daemon.model.backend import score_many
from intentd.daemon.model.loader import load_backend
from intentd.daemon.output.events import REJECT_LABEL
from intentd.trainer.fitting.data import load_audio, load_data


def cpu_per_command_ms(backend: object, audios: list[np.ndarray]) -> float:
    t0 = time.process_time()
    for audio in audios:
        scorer = backend.utterance_scorer()  # type: ignore[attr-defined]
        scorer.push(audio)
        score_many(backend, [scorer])  # type: ignore[arg-type]
    return (time.process_time() - t0) * 1000.0 / len(audios)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    backend = load_backend(args.model, 1)
    space = backend.slot_space
    if space is None:
        print(f"{args.model}: not a slot model", file=sys.stderr)
        return 2
    commands = [ex for ex in load_data(args.data).test if ex.label != REJECT_LABEL]
    audios = [load_audio(ex, 16000) for ex in commands[: args.n]]
    speech_s = sum(a.size for a in audios) / 16000
    best = {"slots": float("inf"), "intent_only": float("inf")}
    for r in range(args.repeats):
        for kind in (("slots", "intent_only") if r % 2 == 0 else ("intent_only", "slots")):
            backend.head.has_slot_heads = kind == "slots"
            backend.slot_space = space if kind == "slots" else None
            best[kind] = min(best[kind], cpu_per_command_ms(backend, audios))
    print(json.dumps({"commands": len(audios), "speech_s_per_command":
                      round(speech_s / len(audios), 2),
                      "cpu_ms_per_command": {k: round(v, 1) for k, v in best.items()},
                      "ratio": round(best["slots"] / best["intent_only"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
