"""Score intent events (JSON lines) against a truth CSV
(``start_s,end_s,intent[,text][,slots]``).

Matching is overlap-based and one-to-one: every (truth span, event) pair that overlaps in
time is a candidate, pairs are taken greedily by decreasing overlap, and each truth span and
each event is used at most once. A truth span without an event is a miss (counts as wrong);
an event without a truth span is a false accept. A truth with a ``slots`` column (JSON
objects, as ``intentd-train democall`` writes for specs with slots) is also scored as the
Picovoice benchmark scores commands: right only when the intent and the whole set of slot
values are exact (``command_acceptance``).

Usage: ``python -m intentd.daemon.score EVENTS.jsonl TRUTH.csv`` prints a summary as one
JSON object.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from intentd.daemon.errors import DataError, IntentdError


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float
    intent: str
    slots: dict[str, str] | None = None  # None: the truth has no slots column


@dataclass(frozen=True)
class Match:
    truth: Span
    event: dict[str, object]

    @property
    def correct(self) -> bool:
        return self.event.get("type") == "intent" and self.event.get("intent") == self.truth.intent

    @property
    def command_correct(self) -> bool:
        """The intent right and every slot value exact, none missing or extra."""
        heard = self.event.get("slots")
        said = ({k: str(v.get("value", "")).strip() for k, v in heard.items()}
                if isinstance(heard, dict) else {})
        truth = {k: v.strip() for k, v in (self.truth.slots or {}).items()}
        return self.correct and said == truth


def read_truth(path: Path) -> list[Span]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"{path}: cannot read truth CSV ({exc.strerror})") from exc
    spans = []
    for line, row in enumerate(rows, start=2):
        try:
            slots = _slots(path, line, row["slots"]) if "slots" in row else None
            spans.append(Span(float(row["start_s"]), float(row["end_s"]), row["intent"], slots))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}:{line}: expected columns start_s,end_s,intent with numeric times"
            ) from exc
    return spans


def _slots(path: Path, line: int, text: str | None) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{line}: slots is not JSON ({exc.msg}); write an object "
                        'such as {"room": "kitchen"}') from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}:{line}: slots must be a JSON object such as "
                        '{"room": "kitchen"}')
    return {str(k): str(v) for k, v in value.items()}


def read_events(path: Path) -> list[dict[str, object]]:
    events = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read events ({exc.strerror})") from exc
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: not a JSON line ({exc.msg})") from exc
        if ev.get("type") in ("intent", "no_match"):
            events.append(ev)
    return events


def match(truth: list[Span], events: list[dict[str, object]]) -> tuple[list[Match], int]:
    """One-to-one overlap matching; returns the matches and the number of unmatched events."""
    pairs = []
    for ti, t in enumerate(truth):
        for ei, ev in enumerate(events):
            overlap = min(t.end_s, float(ev["end_s"])) - max(t.start_s, float(ev["start_s"]))
            if overlap > 0:
                pairs.append((overlap, ti, ei))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    used_t: set[int] = set()
    used_e: set[int] = set()
    matches: dict[int, Match] = {}
    for _, ti, ei in pairs:
        if ti in used_t or ei in used_e:
            continue
        used_t.add(ti)
        used_e.add(ei)
        matches[ti] = Match(truth[ti], events[ei])
    return [matches[i] for i in sorted(matches)], len(events) - len(used_e)


def summarize(truth: list[Span], events: list[dict[str, object]]) -> dict[str, object]:
    matches, unmatched = match(truth, events)
    n = len(truth)
    correct = sum(m.correct for m in matches)
    start_err = [abs(float(m.event["start_s"]) - m.truth.start_s) * 1000 for m in matches]
    end_err = [abs(float(m.event["end_s"]) - m.truth.end_s) * 1000 for m in matches]
    latency = [float(m.event["latency_ms"]) for m in matches if "latency_ms" in m.event]
    with_slots = any(t.slots is not None for t in truth)
    commands = sum(m.command_correct for m in matches)
    return {
        "utterances": n,
        "events": len(events),
        "matched": len(matches),
        "missed": n - len(matches),
        "false_accepts": unmatched,
        "accuracy": round(correct / n, 4) if n else None,
        **({"command_acceptance": round(commands / n, 4) if n else None}
           if with_slots else {}),
        "start_error_ms_max": round(max(start_err), 1) if start_err else None,
        "end_error_ms_max": round(max(end_err), 1) if end_err else None,
        "boundary_error_ms_median": (
            round(statistics.median(start_err + end_err), 1) if start_err else None
        ),
        "latency_ms_median": round(statistics.median(latency), 1) if latency else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m intentd.daemon.score EVENTS.jsonl TRUTH.csv", file=sys.stderr)
        return 2
    try:
        summary = summarize(read_truth(Path(args[1])), read_events(Path(args[0])))
    except IntentdError as exc:
        print(f"intentd-score: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
