"""The event wire format is a public contract: exact strings, not just 'valid JSON'."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from intentd.daemon.output.events import (
    CallInfo,
    IntentEvent,
    LabelScore,
    SlotScore,
    SpeechEndEvent,
    SpeechStartEvent,
    StatsEvent,
    StreamFigures,
    iso_utc_ms,
    to_json_line,
)

TS = datetime(2024, 5, 1, 12, 0, 3, 456789, tzinfo=UTC).timestamp()


def _intent(**kw: object) -> IntentEvent:
    base: dict[str, object] = dict(
        type="intent", intent="check_balance", score=0.912345678,
        top=(LabelScore("check_balance", 0.912345678), LabelScore("transfer", 0.05),
             LabelScore("stop", 0.03765432)),
        utterance_id=3, stream="default", start_s=12.34567, end_s=14.0004, windows=4,
        latency_ms=87.6543, ts=TS, model="banking", end="early", decided_s=14.42049)
    base.update(kw)
    return IntentEvent(**base)  # type: ignore[arg-type]


def test_intent_event_exact_line() -> None:
    assert to_json_line(_intent()) == (
        '{"v": 1, "type": "intent", "intent": "check_balance", "score": 0.9123, '
        '"top": [{"intent": "check_balance", "score": 0.9123}, '
        '{"intent": "transfer", "score": 0.05}, {"intent": "stop", "score": 0.0377}], '
        '"utterance_id": 3, "stream": "default", "start_s": 12.346, "end_s": 14.0, '
        '"end": "early", "decided_s": 14.42, "windows": 4, "latency_ms": 87.7, '
        '"ts": "2024-05-01T12:00:03.457Z", '
        '"model": "banking"}'
    )


def test_intent_event_defaults_to_a_silence_end_decided_at_its_end() -> None:
    line = to_json_line(_intent(end="silence", decided_s=None))
    assert '"end_s": 14.0, "end": "silence", "decided_s": 14.0, "windows": 4' in line


def test_no_match_event_exact_line() -> None:
    ev = _intent(type="no_match", intent=None, score=0.41,
                 top=(LabelScore("transfer", 0.41), LabelScore("stop", 0.4)), windows=1,
                 latency_ms=5, utterance_id=0, start_s=0.0, end_s=0.5)
    assert to_json_line(ev) == (
        '{"v": 1, "type": "no_match", "intent": null, "score": 0.41, '
        '"top": [{"intent": "transfer", "score": 0.41}, {"intent": "stop", "score": 0.4}], '
        '"utterance_id": 0, "stream": "default", "start_s": 0.0, "end_s": 0.5, '
        '"end": "early", "decided_s": 14.42, "windows": 1, "latency_ms": 5.0, '
        '"ts": "2024-05-01T12:00:03.457Z", '
        '"model": "banking"}'
    )


def test_slot_model_event_exact_line() -> None:
    ev = _intent(intent="set_brightness", top=(LabelScore("set_brightness", 0.912345678),),
                 slots=(SlotScore("level", "50", 0.87654, "fifty percent"),
                        SlotScore("room", "kitchen", 0.99)),
                 text="set the kitchen light to fifty percent")
    assert to_json_line(ev) == (
        '{"v": 1, "type": "intent", "intent": "set_brightness", "score": 0.9123, '
        '"top": [{"intent": "set_brightness", "score": 0.9123}], '
        '"slots": {"level": {"value": "50", "text": "fifty percent", "score": 0.8765}, '
        '"room": {"value": "kitchen", "text": "kitchen", "score": 0.99}}, '
        '"text": "set the kitchen light to fifty percent", '
        '"utterance_id": 3, "stream": "default", "start_s": 12.346, "end_s": 14.0, '
        '"end": "early", "decided_s": 14.42, "windows": 4, "latency_ms": 87.7, '
        '"ts": "2024-05-01T12:00:03.457Z", '
        '"model": "banking"}'
    )
    # A slot model's no_match (or an intent with no slot heard) says so with {}.
    none = _intent(type="no_match", intent=None, top=(LabelScore("_none", 0.9),), slots=(),
                   text="")
    assert '"top": [{"intent": "_none", "score": 0.9}], "slots": {}, "text": null, ' \
        '"utterance_id"' in to_json_line(none)


def test_stats_event_exact_line() -> None:
    ev = StatsEvent(uptime_s=61.26, streams=(StreamFigures("kitchen", "running", 60.04, 3, 1, 0,
                                                           2),),
                    utterances=3, events=(("intent", 2), ("no_match", 1)),
                    windows_classified=0, latency_ms_median=41.5, queue_items=4,
                    rss_mb=512.345, ts=TS)
    assert to_json_line(ev) == (
        '{"v": 1, "type": "stats", "uptime_s": 61.3, "streams": {"kitchen": {"state": '
        '"running", "audio_s": 60.0, "utterances": 3, "discarded": 1, "dropped_blocks": 0, '
        '"overflows": 2}}, "utterances": 3, "events": {"intent": 2, "no_match": 1}, '
        '"windows_classified": 0, "latency_ms_median": 41.5, "queue_items": 4, '
        '"rss_mb": 512.3, "ts": "2024-05-01T12:00:03.457Z"}'
    )


def test_speech_events_exact_lines() -> None:
    assert to_json_line(SpeechStartEvent(7, "kitchen", 1.23456, TS)) == (
        '{"v": 1, "type": "speech_start", "utterance_id": 7, "stream": "kitchen", '
        '"start_s": 1.235, "ts": "2024-05-01T12:00:03.457Z"}'
    )
    assert to_json_line(SpeechEndEvent(7, "kitchen", 2.0, TS)) == (
        '{"v": 1, "type": "speech_end", "utterance_id": 7, "stream": "kitchen", '
        '"end_s": 2.0, "ts": "2024-05-01T12:00:03.457Z"}'
    )


def test_telephony_call_exact_lines() -> None:
    """A phone call's track: "call" after "stream", the platform's own names for the ids."""
    call = CallInfo("CA5", "MZ5", (("crm_id", "884"), ("queue", "billing")))
    ev = _intent(stream="CA5/inbound", call=call)
    assert to_json_line(ev) == (
        '{"v": 1, "type": "intent", "intent": "check_balance", "score": 0.9123, '
        '"top": [{"intent": "check_balance", "score": 0.9123}, '
        '{"intent": "transfer", "score": 0.05}, {"intent": "stop", "score": 0.0377}], '
        '"utterance_id": 3, "stream": "CA5/inbound", "call": {"callSid": "CA5", '
        '"streamSid": "MZ5", "customParameters": {"crm_id": "884", "queue": "billing"}}, '
        '"start_s": 12.346, "end_s": 14.0, '
        '"end": "early", "decided_s": 14.42, "windows": 4, "latency_ms": 87.7, '
        '"ts": "2024-05-01T12:00:03.457Z", '
        '"model": "banking"}'
    )
    bare = CallInfo(None, "MZ6")
    assert to_json_line(SpeechStartEvent(0, "MZ6/outbound", 1.5, TS, bare)) == (
        '{"v": 1, "type": "speech_start", "utterance_id": 0, "stream": "MZ6/outbound", '
        '"call": {"callSid": null, "streamSid": "MZ6", "customParameters": {}}, '
        '"start_s": 1.5, "ts": "2024-05-01T12:00:03.457Z"}')
    assert to_json_line(SpeechEndEvent(0, "MZ6/outbound", 2.25, TS, bare)) == (
        '{"v": 1, "type": "speech_end", "utterance_id": 0, "stream": "MZ6/outbound", '
        '"call": {"callSid": null, "streamSid": "MZ6", "customParameters": {}}, '
        '"end_s": 2.25, "ts": "2024-05-01T12:00:03.457Z"}')


def test_line_is_single_line_utf8_json() -> None:
    line = to_json_line(_intent(intent="café\nbar", top=(LabelScore("café\nbar", 0.9),)))
    assert "\n" not in line
    assert "café" in line
    assert json.loads(line)["intent"] == "café\nbar"


def test_iso_timestamp_rounding_never_gives_1000_ms() -> None:
    assert iso_utc_ms(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc_ms(59.9996) == "1970-01-01T00:01:00.000Z"
    assert iso_utc_ms(1.0004) == "1970-01-01T00:00:01.000Z"


def test_intent_and_type_must_agree() -> None:
    with pytest.raises(ValueError):
        _intent(type="no_match")
    with pytest.raises(ValueError):
        _intent(intent=None)
    with pytest.raises(ValueError):
        _intent(type="maybe")


def test_nan_score_is_refused() -> None:
    with pytest.raises(ValueError):
        to_json_line(_intent(score=float("nan")))
