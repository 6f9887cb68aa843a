"""Metrics of an evaluation run, computed from the events of threshold-0 replays.

A threshold ``t`` is applied afterwards: an event whose top score is below ``t`` becomes a
``no_match``. Truth spans and events are paired by :func:`intentd.daemon.score.match` (one-to-one,
by overlap), which does not depend on the threshold, so segmentation metrics do not either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentd.daemon.score import Match, Span, match

NO_MATCH = "no_match"  # an event was there but below the threshold
MISSED = "missed"  # no event overlapped the truth span
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))  # 0.0..0.95

Event = dict[str, Any]


@dataclass
class StreamResult:
    spans: list[Span]
    events: list[Event]


def at_threshold(events: Sequence[Event], threshold: float) -> list[Event]:
    """Copies of ``events`` as the daemon would have emitted them at ``threshold``."""
    out = []
    for ev in events:
        ev = dict(ev)
        if float(ev["score"]) < threshold:
            ev["type"], ev["intent"] = NO_MATCH, None
        out.append(ev)
    return out


def _predictions(results: Sequence[StreamResult], threshold: float
                 ) -> tuple[list[str], list[str], int]:
    """Truth labels, predicted labels (an intent, NO_MATCH or MISSED) and the number of
    events matched to no truth span that are intents at ``threshold``."""
    truth: list[str] = []
    pred: list[str] = []
    spurious = 0
    for r in results:
        events = at_threshold(r.events, threshold)
        matches, _ = match(r.spans, events)
        by_span: dict[int, Match] = {id(m.truth): m for m in matches}
        used = {id(m.event) for m in matches}
        for span in r.spans:
            truth.append(span.intent)
            m = by_span.get(id(span))
            if m is None:
                pred.append(MISSED)
            else:
                pred.append(str(m.event["intent"]) if m.event["type"] == "intent" else NO_MATCH)
        spurious += sum(1 for e in events if id(e) not in used and e["type"] == "intent")
    return truth, pred, spurious


def macro_f1(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    """Mean over intents present in truth or predictions of 2TP/(2TP+FP+FN); a miss or a
    no_match is a false negative of the true intent."""
    scores = []
    for c in labels:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred, strict=True) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred, strict=True) if t == c and p != c)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def utterance_metrics(results: Sequence[StreamResult], labels: Sequence[str],
                      threshold: float) -> dict[str, Any]:
    truth, pred, spurious = _predictions(results, threshold)
    n = len(truth)
    correct = sum(1 for t, p in zip(truth, pred, strict=True) if t == p)
    return {
        "utterances": n,
        "correct": correct,
        "accuracy": round(correct / n, 4) if n else None,
        "macro_f1": round(macro_f1(truth, pred, labels), 4),
        "missed": pred.count(MISSED),
        "no_match": pred.count(NO_MATCH),
        "spurious_intents": spurious,
        **slot_metrics(results, threshold),
    }


def slot_metrics(results: Sequence[StreamResult], threshold: float) -> dict[str, Any]:
    """For truth with slots: command acceptance (intent and every slot exact, the Picovoice
    benchmark's rule; a miss or no_match fails) and, per slot, the share of the spans that
    say it whose event reports the same value. Empty for truth without slots."""
    spans = [s for r in results for s in r.spans]
    if not spans or all(s.slots is None for s in spans):
        return {}
    commands = 0
    per_slot: dict[str, list[int]] = {}
    for r in results:
        matches, _ = match(r.spans, at_threshold(r.events, threshold))
        for m in matches:
            commands += m.command_correct
            heard = m.event.get("slots") if m.event["type"] == "intent" else None
            heard = heard if isinstance(heard, dict) else {}
            for name, value in (m.truth.slots or {}).items():
                got = heard.get(name, {}).get("value")
                per_slot.setdefault(name, [0, 0])[0] += str(got or "").strip() == value.strip()
        for span in r.spans:
            for name in span.slots or {}:
                per_slot.setdefault(name, [0, 0])[1] += 1
    return {
        "command_acceptance": round(commands / len(spans), 4),
        "slot_accuracy": {k: round(ok / n, 4) for k, (ok, n) in sorted(per_slot.items())},
    }


def confusion(results: Sequence[StreamResult], labels: Sequence[str],
              threshold: float) -> dict[str, Any]:
    """Counts[truth][prediction]; prediction columns are the labels, no_match, missed."""
    truth, pred, _ = _predictions(results, threshold)
    cols = [*labels, NO_MATCH, MISSED]
    index = {c: i for i, c in enumerate(cols)}
    rows = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(cols)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        if t in rows:
            cm[rows[t], index.get(p, index[NO_MATCH])] += 1
    return {"rows": list(labels), "columns": cols, "counts": cm.tolist()}


def segmentation(results: Sequence[StreamResult]) -> dict[str, Any]:
    """Recall: truth spans matched by an event; precision: events matched to a span."""
    spans = events = matched = 0
    for r in results:
        matches, _ = match(r.spans, r.events)
        spans += len(r.spans)
        events += len(r.events)
        matched += len(matches)
    return {
        "truth_spans": spans,
        "events": events,
        "matched": matched,
        "recall": round(matched / spans, 4) if spans else None,
        "precision": round(matched / events, 4) if events else None,
    }


def false_accepts(events: Sequence[Event], hours: float, threshold: float) -> dict[str, Any]:
    # A no_match at threshold 0 is the model's rejection class winning: never an accept.
    n = sum(1 for e in at_threshold(events, threshold) if e["type"] == "intent")
    return {"events": len(events), "false_accepts": n,
            "per_hour": round(n / hours, 3) if hours > 0 else None}


def latency(results: Sequence[StreamResult]) -> dict[str, Any]:
    lat = [float(e["latency_ms"]) for r in results for e in r.events if "latency_ms" in e]
    if not lat:
        return {"events": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {"events": len(lat), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "max_ms": round(max(lat), 1)}


def sweep(results: Sequence[StreamResult], labels: Sequence[str],
          fa_streams: dict[str, tuple[list[Event], float]],
          thresholds: Sequence[float] = THRESHOLDS,
          conditions: dict[str, Sequence[StreamResult]] | None = None
          ) -> list[dict[str, Any]]:
    """One row per threshold: accuracy and macro-F1 of ``results``, accuracy in each of
    ``conditions`` (the best threshold in noise is lower than in quiet) and FA/h of every
    false-accept stream."""
    rows = []
    for t in thresholds:
        m = utterance_metrics(results, labels, t)
        row: dict[str, Any] = {"threshold": t, "accuracy": m["accuracy"],
                               "macro_f1": m["macro_f1"]}
        if conditions:
            row["accuracy_by_condition"] = {
                c: utterance_metrics(res, labels, t)["accuracy"] for c, res in conditions.items()}
        for name, (events, hours) in fa_streams.items():
            row[f"fa_per_hour_{name}"] = false_accepts(events, hours, t)["per_hour"]
        rows.append(row)
    return rows


def _overlaps(span: Span, event: Event) -> bool:
    return min(span.end_s, float(event["end_s"])) > max(span.start_s, float(event["start_s"]))


def _pct(xs: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def commands(results: Sequence[StreamResult]) -> dict[str, Any]:
    """Segmentation command by command (threshold-free).

    ``one_to_one``: share of the truth spans overlapped by exactly one event that overlaps
    no other span. For those: the boundary error (start and end, ms) and the time from the
    speaker's stop to the verdict's decision, in stream time (``decided_s`` - truth end;
    the model's own time, ``latency_ms``, comes on top live). ``end``: the events' end
    reasons; ``early_share``: events answered early."""
    spans = one = 0
    bounds: list[float] = []
    waits: list[float] = []
    ends: dict[str, int] = {}
    n_events = 0
    for r in results:
        n_events += len(r.events)
        for e in r.events:
            key = str(e.get("end", "silence"))
            ends[key] = ends.get(key, 0) + 1
        for span in r.spans:
            spans += 1
            hit = [e for e in r.events if _overlaps(span, e)]
            if len(hit) != 1 or sum(_overlaps(s, hit[0]) for s in r.spans) != 1:
                continue
            one += 1
            e = hit[0]
            bounds += [abs(float(e["start_s"]) - span.start_s) * 1000,
                       abs(float(e["end_s"]) - span.end_s) * 1000]
            decided = float(e.get("decided_s", e["end_s"]))
            waits.append((decided - span.end_s) * 1000)
    return {
        "truth_spans": spans,
        "one_to_one": round(one / spans, 4) if spans else None,
        "boundary_error_ms_p90": _pct(bounds, 90),
        "stop_to_decision_ms_p50": _pct(waits, 50),
        "stop_to_decision_ms_p95": _pct(waits, 95),
        "end": dict(sorted(ends.items())),
        "early_share": round(ends.get("early", 0) / n_events, 4) if n_events else None,
    }
