"""Segmentation by the model on the real coffee orders in ../shared/realspeech (never
committed): early answers against the final verdict, and the orders back to back.

1. One order per stream (its audible part, 0.3-0.5 s of silence before it and 2 s after,
   noise gate off as for every one-command-per-file figure), once
   with ``segmentation.mode: silence`` (the final verdict: the hangover ends every order)
   and once with ``model``: the share answered early, how many early answers differ from
   the final verdict (intent and slots; the drink alone), and the time from the speaker's
   last word to the decision (stream time).
2. The orders joined into streams (their silences trimmed, 0.5-1.5 s apart, 25 per
   stream, the config's noise gate), both modes: one-to-one segmentation (each order
   exactly one event) and drink accuracy (its one event, for it alone, names the drink).

The drink is the ``coffeeDrink`` slot of a model trained on
``examples/intents/coffee_maker.yaml``, or the intent of one trained on
``examples/intents/coffee.yaml``.

Usage: python bench/segmentation.py --model M [--data DIR] [--config C] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from intentd.daemon.audio.windowing import preprocess
from intentd.daemon.config import Config, load_config
from intentd.daemon.model.loader import load_backend
from intentd.daemon.score import Span
from intentd.trainer.evaluation import metrics as M
from intentd.trainer.evaluation.replay import replay, sweep_config
from intentd.trainer.synthesis.pauses import speech_bounds

RATE = 16000


def load_orders(data: Path) -> list[tuple[np.ndarray, dict[str, Any]]]:
    labels = json.loads((data / "labels.json").read_text())
    out = []
    for name in sorted(labels):
        audio, rate = sf.read(str(data / "wav" / name), dtype="float32", always_2d=False)
        audio = preprocess(audio, int(rate), RATE)
        s, e = speech_bounds(audio, RATE)
        slots = {k: v.strip() for k, v in labels[name].get("slots", {}).items()}
        out.append((audio[s:e].astype(np.float32), {"intent": labels[name]["intent"],
                                                    "slots": slots}))
    return out


def drink(event: dict[str, Any] | None, by_slot: bool) -> str | None:
    if event is None or event["type"] != "intent":
        return None
    if by_slot:
        return (event.get("slots") or {}).get("coffeeDrink", {}).get("value")
    return str(event["intent"])


def verdict(event: dict[str, Any]) -> tuple[Any, ...]:
    slots = event.get("slots") or {}
    return (event["intent"], tuple(sorted((k, v["value"]) for k, v in slots.items())))


def with_mode(cfg: Config, mode: str, gate_db: float | None = None) -> Config:
    cfg = replace(cfg, segmentation=replace(cfg.segmentation, mode=mode))
    if gate_db is not None:
        cfg = replace(cfg, vad=replace(cfg.vad, noise_gate_db=gate_db))
    return sweep_config(cfg)


def per_file(cfg: Config, backend: Any, orders: list, rng: random.Random,
             by_slot: bool) -> dict[str, Any]:
    runs: dict[str, list[list[dict[str, Any]]]] = {"silence": [], "model": []}
    ends = []
    for audio, _ in orders:
        lead = np.zeros(int(rng.uniform(0.3, 0.5) * RATE), np.float32)
        trail = np.zeros(2 * RATE, np.float32)  # the hangover runs out: no eof verdicts
        stream = np.concatenate([lead, audio, trail])
        ends.append((lead.size + audio.size) / RATE)
        for mode in runs:
            runs[mode].append(replay(with_mode(cfg, mode, 0.0), backend, [stream], RATE))
    threshold = cfg.model.threshold
    early = differs = differs_drink = 0
    waits = []
    right = {m: 0 for m in runs}
    for i, (_, truth) in enumerate(orders):
        ref = [e for e in runs["silence"][i] if e["score"] >= threshold]
        got = [e for e in runs["model"][i] if e["score"] >= threshold]
        for mode, evs in (("silence", ref), ("model", got)):
            right[mode] += any(drink(e, by_slot) == truth["slots"].get("coffeeDrink",
                                                                       truth["intent"])
                               for e in evs[:1])
        first = got[0] if got else None
        if first is not None and first["end"] == "early":
            early += 1
            final = ref[0] if ref else None
            differs += final is None or verdict(final) != verdict(first)
            differs_drink += drink(final, by_slot) != drink(first, by_slot)
        if first is not None:
            waits.append((float(first["decided_s"]) - ends[i]) * 1000)
    n = len(orders)
    return {
        "orders": n,
        "drink_right": {m: right[m] for m in runs},
        "answered_early": early,
        "early_differs_from_final": differs,
        "early_differs_drink": differs_drink,
        "stop_to_decision_ms_p50": round(float(np.percentile(waits, 50)), 1),
        "stop_to_decision_ms_p95": round(float(np.percentile(waits, 95)), 1),
        "events_model": sum(len(r) for r in runs["model"]),
    }


def joined(cfg: Config, backend: Any, orders: list, rng: random.Random, by_slot: bool,
           per_stream: int = 25) -> dict[str, Any]:
    order = list(range(len(orders)))
    rng.shuffle(order)
    out: dict[str, Any] = {}
    streams = []
    for k in range(0, len(order), per_stream):
        pieces, spans, pos = [], [], 0
        for i in order[k:k + per_stream]:
            gap = np.zeros(int(rng.uniform(0.5, 1.5) * RATE), np.float32)
            pieces += [gap, orders[i][0]]
            start = pos + gap.size
            pos = start + orders[i][0].size
            truth = orders[i][1]
            spans.append(Span(start / RATE, pos / RATE, truth["intent"], truth["slots"]))
        pieces.append(np.zeros(int(1.5 * RATE), np.float32))
        floor = np.random.default_rng(k).normal(0, 10 ** (-60 / 20), pos + int(1.5 * RATE))
        streams.append((np.concatenate(pieces) + floor.astype(np.float32), spans))
    for mode in ("silence", "model"):
        results = [M.StreamResult(spans, replay(with_mode(cfg, mode), backend, [audio], RATE))
                   for audio, spans in streams]
        right = 0
        for r in results:
            for span in r.spans:
                hit = [e for e in r.events if min(span.end_s, e["end_s"])
                       > max(span.start_s, e["start_s"]) and e["score"] >= cfg.model.threshold]
                want = (span.slots or {}).get("coffeeDrink", span.intent)
                alone = len(hit) == 1 and sum(
                    min(s.end_s, hit[0]["end_s"]) > max(s.start_s, hit[0]["start_s"])
                    for s in r.spans) == 1  # one event, for this order only
                right += alone and drink(hit[0], by_slot) == want
        c = M.commands(results)
        out[mode] = {"one_to_one": c["one_to_one"], "drink_right": right,
                     "events": sum(len(r.events) for r in results), "end": c["end"],
                     "stop_to_decision_ms_p50": c["stop_to_decision_ms_p50"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "realspeech"
    ap.add_argument("--data", default=str(default_data))
    ap.add_argument("--config", default=None, help="daemon config (default: the defaults)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config, {"model.path": args.model})
    backend = load_backend(cfg.model.path, cfg.model.threads, cfg.model.backend)
    by_slot = "coffeeDrink" in (getattr(getattr(backend, "slot_space", None), "names", None)
                                or [])
    orders = load_orders(Path(args.data))
    result = {"model": args.model, "drink_from": "slot" if by_slot else "intent",
              "segmentation": {k: v for k, v in vars(cfg.segmentation).items()},
              "per_file": per_file(cfg, backend, orders, random.Random(args.seed), by_slot),
              "joined": joined(cfg, backend, orders, random.Random(args.seed + 1), by_slot)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
