"""A model on many generated phone calls, through the ``intentd`` command itself.

Each call is ``intentd-train democall`` output for ``--spec``: 20 commands from the voices
that the model trained with synth seed ``--voice-seed`` never heard, 1.5-3 s apart, 40% with
an internal 0.3-1.2 s pause, over pink, brown, hum or babble noise at 15-25 dB (drawn by the
call's seed). Every call runs through ``intentd --no-realtime`` as a subprocess (the product's
own path: source, resample, VAD, windows, worker, JSON lines) and is scored one-to-one against
its truth (``intentd.daemon.score``). The same seeds give the same calls, so two models, or two
versions of the code, are compared on identical audio.

The call figures of docs/results.md come from this script with its
defaults: seeds 1-24, voice seed 7 (the demo's).

Usage: python bench/calls.py --model DIR [--seeds 1-24] [--voice-seed 7]
       [--spec examples/intents/banking.yaml] [--config config.yaml] [--out DIR]
Prints one JSON line per call and a summary; writes OUT/calls.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def parse_seeds(text: str) -> list[int]:
    """``"1-24"``, ``"7,9,12"`` or a mix (``"1-3,8"``) -> the seeds in order, no repeats."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise SystemExit(f"--seeds: {part!r} is not N or N-M") from None
    if not seeds:
        raise SystemExit("--seeds is empty; use e.g. 1-24")
    return list(dict.fromkeys(seeds))


def run_call(model: Path, config: Path, wav: Path, events: Path) -> None:
    with events.open("w", encoding="utf-8") as out:
        proc = subprocess.run([str(BIN / "intentd"), "--config", str(config), "--model",
                               str(model), "--input", str(wav), "--no-realtime"],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"intentd failed on {wav} (exit {proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1:]}")


def score_call(truth_csv: Path, events_path: Path) -> dict[str, object]:
    from intentd.daemon.score import match, read_events, read_truth, summarize

    truth, events = read_truth(truth_csv), read_events(events_path)
    matches, _ = match(truth, events)
    wrong = sum(1 for m in matches if m.event.get("type") == "intent" and not m.correct)
    return {**summarize(truth, events), "correct": sum(m.correct for m in matches),
            "wrong_intents": wrong}


def main() -> int:
    from intentd.trainer.synthesis.democall import make_call

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--seeds", default="1-24")
    p.add_argument("--voice-seed", type=int, default=7,
                   help="the synth --seed the model was trained with (default 7, the demo's)")
    p.add_argument("--spec", type=Path, default=ROOT / "examples/intents/banking.yaml")
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--out", type=Path, default=Path("bench-out/calls"))
    a = p.parse_args()
    if not (a.model / "config.json").is_file():
        raise SystemExit(f"--model {a.model}: not a model dir (no config.json)")
    calls = a.out / f"audio-v{a.voice_seed}"
    calls.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in parse_seeds(a.seeds):
        wav, truth = calls / f"call{seed}.wav", calls / f"call{seed}.csv"
        kind_file = calls / f"call{seed}.kind"
        if not kind_file.is_file():  # same seed, same bytes: make each call once
            kind = make_call(a.spec, wav, truth, seed=seed, voice_seed=a.voice_seed).noise_kind
            kind_file.write_text(kind)  # last: a call cut short is made again
        events = a.out / f"events{seed}.jsonl"
        run_call(a.model, a.config, wav, events)
        row = {"seed": seed, "noise": kind_file.read_text(),
               **score_call(truth, events)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    by_noise: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        by_noise[str(r["noise"])][0] += int(r["correct"])
        by_noise[str(r["noise"])][1] += int(r["utterances"])
    summary = {
        "model": str(a.model), "calls": len(rows),
        "commands": sum(int(r["utterances"]) for r in rows),
        "correct": sum(int(r["correct"]) for r in rows),
        "wrong_intents_printed": sum(int(r["wrong_intents"]) for r in rows),
        "missed": sum(int(r["missed"]) for r in rows),
        "extra_events": sum(int(r["false_accepts"]) for r in rows),
        "by_noise": {k: f"{c}/{n}" for k, (c, n) in sorted(by_noise.items())},
    }
    (a.out / "calls.json").write_text(json.dumps({"summary": summary, "calls": rows},
                                                 indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
