"""Segmentation alone (no model) on generated calls, per background noise.

Each call is ``intentd.trainer.synthesis.democall`` output for the banking spec: 10 commands from
held-out voices, 1.5-3 s apart, some with an internal pause, over pink, brown, hum or babble noise
at 15-25 dB (``--snr-db``). The calls are streamed through
:class:`intentd.daemon.audio.segmenter.Segmenter`
in 30 ms blocks with the ``vad`` settings of ``--config``, and each truth command is scored:

* one-to-one: exactly one utterance overlaps it, and that utterance overlaps no other
  command (missed, split and merged commands are not);
* boundaries: of the one-to-one commands, the share of starts and ends within 150 ms (the
  end-to-end test's tolerance) of the truth.

Usage: python bench/vad_calls.py [--config config.yaml] [--gate-db DB] [--seeds 200 6]
       [--snr-db 15 25] [--kinds pink,brown,hum,babble]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from intentd.daemon.audio.segmenter import Segmenter, UtteranceEnd
from intentd.daemon.config import load_config
from intentd.trainer.synthesis.democall import CALL_NOISE_KINDS, make_call

SPEC = Path(__file__).resolve().parent.parent / "examples" / "intents" / "banking.yaml"
TOLERANCE_S = 0.15


def segment(path: Path, cfg: object) -> list[tuple[float, float]]:
    audio, rate = sf.read(str(path), dtype="float32")
    seg = Segmenter(cfg, rate)  # type: ignore[arg-type]
    block = rate * 30 // 1000
    events = []
    for i in range(0, audio.size, block):
        events += seg.process(audio[i:i + block])
    events += seg.flush()
    return [(e.voiced_start_sample / rate, e.voiced_end_sample / rate)
            for e in events if isinstance(e, UtteranceEnd)]


def score(truth: list[tuple[float, float]], spans: list[tuple[float, float]]
          ) -> tuple[int, int, int]:
    """(one-to-one commands, boundaries within tolerance, commands)."""
    one = within = 0
    for a, b in truth:
        hits = [(c, d) for c, d in spans if c < b and d > a]
        if len(hits) != 1:
            continue
        c, d = hits[0]
        if sum(1 for a2, b2 in truth if c < b2 and d > a2) != 1:
            continue
        one += 1
        within += int(abs(c - a) <= TOLERANCE_S) + int(abs(d - b) <= TOLERANCE_S)
    return one, within, len(truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--gate-db", type=float, default=None,
                    help="override vad.noise_gate_db (0: off)")
    ap.add_argument("--seeds", type=int, nargs=2, default=[200, 6], metavar=("FIRST", "N"))
    ap.add_argument("--snr-db", type=float, nargs=2, default=[15.0, 25.0], metavar=("MIN", "MAX"),
                    help="background noise SNR range of the calls (default 15 25)")
    ap.add_argument("--kinds", default=",".join(CALL_NOISE_KINDS),
                    help="comma-separated noise kinds (default: all)")
    args = ap.parse_args()
    cfg = load_config(args.config).vad
    if args.gate_db is not None:
        cfg = dataclasses.replace(cfg, noise_gate_db=args.gate_db)
    first, n = args.seeds
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            totals = np.zeros(3, dtype=int)
            for seed in range(first, first + n):
                wav, csv_path = Path(tmp) / f"{kind}{seed}.wav", Path(tmp) / f"{kind}{seed}.csv"
                make_call(SPEC, wav, csv_path, n_utterances=10, seed=seed, noise_kind=kind,
                          snr_db=(args.snr_db[0], args.snr_db[1]))
                with open(csv_path, newline="", encoding="utf-8") as f:
                    truth = [(float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(f)]
                totals += score(truth, segment(wav, cfg))
            one, within, count = (int(v) for v in totals)
            result[kind] = {"one_to_one": round(one / count, 3),
                            "boundaries_within_150ms": round(within / max(1, 2 * one), 3)}
    print(json.dumps({"noise_gate_db": cfg.noise_gate_db, "snr_db": args.snr_db,
                      "calls_per_noise": n,
                      "commands_per_noise": 10 * n, **result}))


if __name__ == "__main__":
    main()
