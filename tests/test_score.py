import json
from pathlib import Path

import pytest

from intentd.daemon.score import Span, main, match, summarize


def ev(start: float, end: float, intent: str, kind: str = "intent", lat: float = 10.0) -> dict:
    return {"type": kind, "intent": intent, "start_s": start, "end_s": end, "latency_ms": lat}


def test_match_is_one_to_one_by_largest_overlap() -> None:
    truth = [Span(1.0, 2.0, "a"), Span(3.0, 4.0, "b")]
    events = [ev(0.9, 2.1, "a"), ev(1.9, 3.2, "x"), ev(3.1, 4.0, "b")]
    matches, unmatched = match(truth, events)
    assert [(m.truth.intent, m.event["intent"]) for m in matches] == [("a", "a"), ("b", "b")]
    assert unmatched == 1


def test_summary_counts_misses_as_wrong_and_no_match_as_wrong() -> None:
    truth = [Span(1.0, 2.0, "a"), Span(3.0, 4.0, "b"), Span(5.0, 6.0, "c")]
    events = [ev(1.05, 2.0, "a", lat=100), ev(3.0, 4.2, "b", kind="no_match", lat=300)]
    s = summarize(truth, events)
    assert s["utterances"] == 3
    assert s["matched"] == 2
    assert s["missed"] == 1
    assert s["false_accepts"] == 0
    assert s["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["start_error_ms_max"] == pytest.approx(50.0)
    assert s["end_error_ms_max"] == pytest.approx(200.0)
    assert s["latency_ms_median"] == pytest.approx(200.0)


def test_cli_reports_bad_truth_file_with_line(tmp_path: Path, capsys) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(ev(0, 1, "a")) + "\n")
    truth = tmp_path / "t.csv"
    truth.write_text("start_s,end_s,intent\n0,1,a\nzero,1,b\n")
    assert main([str(events), str(truth)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"intentd-score: error: {truth}:3: expected columns start_s,end_s,intent "
                   "with numeric times"]
