"""Typed daemon events and their JSON wire format (schema v1).

The worker hands these dataclasses to the router; each sink serializes them itself. Sinks
that write intentd's own JSON (stdout, sockets) use :func:`to_json_line`, so that schema
lives in this module only.

Rounding rules: scores to 4 decimals, ``start_s``/``end_s`` to 3 decimals (1 ms),
``latency_ms`` to 0.1 ms, ``ts`` is ISO-8601 UTC with milliseconds and a ``Z`` suffix.
A ``no_match`` event carries ``"intent": null``; its best guess is still ``top[0]``, which
is :data:`REJECT_LABEL` when the model's rejection class won. A model with slot heads adds
``"slots"`` after ``top``: ``{name: {"value": ..., "text": ..., "score": ...}}`` for the
slots heard (``{}`` when none, and always for ``no_match``); other models' events have no
such key. A model trained from a spec adds ``"text"`` next: the command as a sentence (the
intent's template with the heard values' words, :mod:`intentd.daemon.model.sentences`;
``null`` for ``no_match``). A stream that is a phone call's track (:mod:`intentd.daemon.telephony`)
adds ``"call"`` after ``stream`` in its verdicts and speech events: ``{"callSid": ...,
"streamSid": ..., "customParameters": {...}}`` as the telephony platform named them, so a
consumer can join them to its CRM; other streams' events have no such key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Literal

SCHEMA_VERSION = 1
# The rejection class ``intentd-train synth`` adds: a model that has it says "not a
# command" with it, and the daemon turns that verdict into a ``no_match`` event.
REJECT_LABEL = "_none"


@dataclass(frozen=True)
class LabelScore:
    intent: str
    score: float


@dataclass(frozen=True)
class SlotScore:
    """A slot heard in the utterance: the value to report, the model's probability and the
    words a speaker says for the value (the value itself when the model does not know)."""

    name: str
    value: str
    score: float
    text: str | None = None

    @property
    def spoken(self) -> str:
        return self.value if self.text is None else self.text


@dataclass(frozen=True)
class CallInfo:
    """The phone call a stream belongs to, as the platform's ``start`` message named it.
    Here, not in the telephony package: the wire schema lives in this module only."""

    call_sid: str | None
    stream_sid: str
    custom_parameters: tuple[tuple[str, str], ...] = ()  # in the platform's order

    def to_dict(self) -> dict[str, object]:
        return {"callSid": self.call_sid, "streamSid": self.stream_sid,
                "customParameters": dict(self.custom_parameters)}


@dataclass(frozen=True)
class IntentEvent:
    """The verdict for one utterance."""

    type: Literal["intent", "no_match"]
    intent: str | None  # None exactly when type == "no_match"
    score: float  # probability of the best label (also for no_match)
    top: tuple[LabelScore, ...]  # best first, at most top_k entries
    utterance_id: int
    stream: str
    start_s: float  # stream time of the first speech sample
    end_s: float  # stream time just after the last speech sample
    windows: int  # windows classified for this utterance
    latency_ms: float  # end of speech seen by the segmenter -> event emitted
    ts: float  # Unix time (seconds) at emission
    model: str
    # Models with slot heads only (else None): the slots heard, for the reported intent
    # (a no_match has none).
    slots: tuple[SlotScore, ...] | None = None
    # Models trained from a spec only (else None): the verdict as a sentence; "" for no_match.
    text: str | None = None
    call: CallInfo | None = None  # telephony streams only
    # How the utterance was ended: silence | early | split | max_length | eof
    # (intentd.daemon.segmentation.settings.END_REASONS).
    end: str = "silence"
    decided_s: float | None = None  # stream time heard when it was decided (None: end_s)

    def __post_init__(self) -> None:
        if self.type not in ("intent", "no_match"):
            raise ValueError(f"IntentEvent.type must be 'intent' or 'no_match', got {self.type!r}")
        if (self.type == "intent") != (self.intent is not None):
            raise ValueError("IntentEvent.intent must be set for 'intent' and None for 'no_match'")


@dataclass(frozen=True)
class SpeechStartEvent:
    TYPE: ClassVar[str] = "speech_start"
    utterance_id: int
    stream: str
    start_s: float
    ts: float
    call: CallInfo | None = None


@dataclass(frozen=True)
class SpeechEndEvent:
    TYPE: ClassVar[str] = "speech_end"
    utterance_id: int
    stream: str
    end_s: float
    ts: float
    call: CallInfo | None = None


@dataclass(frozen=True)
class WindowEvent:
    """One classified window of an utterance (``output.window_events``): evidence during
    speech, before the utterance's verdict."""

    TYPE: ClassVar[str] = "window"
    utterance_id: int
    stream: str
    start_s: float  # stream time of the window's first sample (padding included)
    end_s: float
    top: tuple[LabelScore, ...]  # best first, at most top_k entries
    ts: float


@dataclass(frozen=True)
class StreamFigures:
    name: str
    state: str  # running | ended | failed
    audio_s: float  # audio read so far
    utterances: int
    discarded: int  # segments too short for a verdict
    dropped_blocks: int  # live sources: audio lost to a full queue
    overflows: int  # live sources: the device's own overruns


@dataclass(frozen=True)
class StatsEvent:
    """Periodic figures (``output.stats_interval_s``), for dashboards and alerts."""

    TYPE: ClassVar[str] = "stats"
    uptime_s: float
    streams: tuple[StreamFigures, ...]
    utterances: int
    events: tuple[tuple[str, int], ...]  # (event type, count), sorted by type
    windows_classified: int
    latency_ms_median: float | None
    queue_items: int  # work waiting for the model worker
    rss_mb: float
    ts: float


Event = IntentEvent | SpeechStartEvent | SpeechEndEvent | WindowEvent | StatsEvent


def iso_utc_ms(ts: float) -> str:
    """``2024-05-01T12:00:00.123Z`` for a Unix time, rounded to the nearest millisecond."""
    ms_total = round(ts * 1000.0)
    secs, ms = divmod(ms_total, 1000)
    dt = datetime.fromtimestamp(secs, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def _score(x: float) -> float:
    return round(float(x), 4)


def _secs(x: float) -> float:
    return round(float(x), 3)


def _call(call: CallInfo | None) -> dict[str, object]:
    return {} if call is None else {"call": call.to_dict()}


def to_dict(event: Event) -> dict[str, object]:
    """The wire object with keys in schema order."""
    if isinstance(event, IntentEvent):
        out: dict[str, object] = {
            "v": SCHEMA_VERSION,
            "type": event.type,
            "intent": event.intent,
            "score": _score(event.score),
            "top": [{"intent": t.intent, "score": _score(t.score)} for t in event.top],
        }
        if event.slots is not None:
            out["slots"] = {s.name: {"value": s.value, "text": s.spoken,
                                     "score": _score(s.score)} for s in event.slots}
        if event.text is not None:
            out["text"] = event.text if event.type == "intent" else None
        return out | {
            "utterance_id": int(event.utterance_id),
            "stream": event.stream,
            **_call(event.call),
            "start_s": _secs(event.start_s),
            "end_s": _secs(event.end_s),
            "end": event.end,
            "decided_s": _secs(event.end_s if event.decided_s is None else event.decided_s),
            "windows": int(event.windows),
            "latency_ms": round(float(event.latency_ms), 1),
            "ts": iso_utc_ms(event.ts),
            "model": event.model,
        }
    if isinstance(event, SpeechStartEvent):
        return {
            "v": SCHEMA_VERSION,
            "type": "speech_start",
            "utterance_id": int(event.utterance_id),
            "stream": event.stream,
            **_call(event.call),
            "start_s": _secs(event.start_s),
            "ts": iso_utc_ms(event.ts),
        }
    if isinstance(event, SpeechEndEvent):
        return {
            "v": SCHEMA_VERSION,
            "type": "speech_end",
            "utterance_id": int(event.utterance_id),
            "stream": event.stream,
            **_call(event.call),
            "end_s": _secs(event.end_s),
            "ts": iso_utc_ms(event.ts),
        }
    if isinstance(event, WindowEvent):
        return {
            "v": SCHEMA_VERSION,
            "type": "window",
            "utterance_id": int(event.utterance_id),
            "stream": event.stream,
            "start_s": _secs(event.start_s),
            "end_s": _secs(event.end_s),
            "top": [{"intent": t.intent, "score": _score(t.score)} for t in event.top],
            "ts": iso_utc_ms(event.ts),
        }
    if isinstance(event, StatsEvent):
        return {
            "v": SCHEMA_VERSION,
            "type": "stats",
            "uptime_s": round(float(event.uptime_s), 1),
            "streams": {f.name: {"state": f.state, "audio_s": round(float(f.audio_s), 1),
                                 "utterances": f.utterances, "discarded": f.discarded,
                                 "dropped_blocks": f.dropped_blocks, "overflows": f.overflows}
                        for f in event.streams},
            "utterances": int(event.utterances),
            "events": dict(event.events),
            "windows_classified": int(event.windows_classified),
            "latency_ms_median": event.latency_ms_median,
            "queue_items": int(event.queue_items),
            "rss_mb": round(float(event.rss_mb), 1),
            "ts": iso_utc_ms(event.ts),
        }
    raise TypeError(f"not an intentd event: {type(event).__name__}")


def to_json_line(event: Event) -> str:
    """One JSON object on one line, without the newline (sinks frame lines).

    Non-ASCII labels stay UTF-8; NaN/inf are refused rather than emitted as invalid JSON.
    """
    return json.dumps(to_dict(event), ensure_ascii=False, allow_nan=False)
