"""Rhasspy Hermes payloads for intentd's verdicts (what :mod:`.mqtt` publishes).

An intent goes to ``hermes/intent/<intentName>`` as an ``NluIntent``; a no_match to
``hermes/nlu/intentNotRecognized`` as an ``NluIntentNotRecognized`` (field names and
shapes as in rhasspy-hermes, so Rhasspy skills, Node-RED flows and Home Assistant's
``intent_script`` through MQTT read them unchanged). ``input`` is the verdict as a sentence
(:mod:`intentd.daemon.model.sentences`); slot values that are plain numbers are reported
as numbers (``{"kind": "Number", "value": 50}``), others as text (``"Unknown"``, as Rhasspy
does for untyped slots).
"""

from __future__ import annotations

import re
from typing import Any

from intentd.daemon.model.sentences import render_text
from intentd.daemon.output.events import IntentEvent

INTENT_TOPIC = "hermes/intent/{intent}"
NOT_RECOGNIZED_TOPIC = "hermes/nlu/intentNotRecognized"
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# MQTT topic levels cannot hold these; intent names normally never do.
_TOPIC_UNSAFE = re.compile(r"[#+/\x00]")


def sentence(event: IntentEvent) -> str:
    """The verdict in words: the model's own sentence when it has one, else its name and
    slot values."""
    if event.text is not None:
        return event.text if event.type == "intent" else ""
    if event.intent is None:
        return ""
    return render_text(None, event.intent, {s.name: s.spoken for s in event.slots or ()})


def _value(value: str) -> dict[str, Any]:
    if _NUMBER.match(value):
        number = float(value)
        return {"kind": "Number", "value": int(number) if number.is_integer() else number}
    return {"kind": "Unknown", "value": value}


def slots(event: IntentEvent, text: str) -> list[dict[str, Any]]:
    """Hermes slot objects; ``range`` where the slot's words are found in ``text``."""
    out: list[dict[str, Any]] = []
    for s in event.slots or ():
        slot: dict[str, Any] = {"entity": s.name, "slotName": s.name, "value": _value(s.value),
                                "rawValue": s.spoken, "confidence": round(float(s.score), 4)}
        at = text.find(s.spoken) if s.spoken else -1
        if at >= 0:
            end = at + len(s.spoken)
            slot["range"] = {"start": at, "end": end, "rawStart": at, "rawEnd": end}
        out.append(slot)
    return out


def message(event: IntentEvent, site_id: str, lang: str | None = None
            ) -> tuple[str, dict[str, Any]]:
    """(topic, payload) for one verdict."""
    text = sentence(event)
    session = f"{event.stream}-{event.utterance_id}"
    if event.type != "intent" or event.intent is None:
        return NOT_RECOGNIZED_TOPIC, {"input": text, "siteId": site_id, "id": session,
                                      "sessionId": session, "customData": None}
    return topic_for(event.intent), {
        "input": text,
        "intent": {"intentName": event.intent, "confidenceScore": round(float(event.score), 4)},
        "siteId": site_id,
        "id": session,
        "sessionId": session,
        "slots": slots(event, text),
        "customData": None,
        "asrTokens": [],
        "asrConfidence": None,
        "rawInput": text,
        "wakewordId": None,
        "lang": lang,
    }


def topic_for(intent: str) -> str:
    return INTENT_TOPIC.format(intent=_TOPIC_UNSAFE.sub("_", intent))
