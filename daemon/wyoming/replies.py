"""The Wyoming messages the server sends: ``info``, and the answer to one audio session.

An audio session (``audio-start`` .. ``audio-stop``) may hold several utterances (a pause,
a cough, two commands). The answer is about ONE command, the most confident ``intent``
verdict of the session (Home Assistant acts on one transcript per session); when no
utterance was a command the transcript is empty and the intent answer is ``not-recognized``.

The transcript is the command's canonical sentence (:mod:`intentd.daemon.model.sentences`),
not what was literally said: Home Assistant's own sentence matching then acts on it, as it
does with speech-to-phrase.
"""

from __future__ import annotations

from collections.abc import Sequence

from wyoming.asr import Transcript
from wyoming.event import Event as WyomingEvent
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    Info,
    IntentModel,
    IntentProgram,
)
from wyoming.intent import Entity, Intent, NotRecognized

from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.model.sentences import render_text
from intentd.daemon.output.events import REJECT_LABEL, IntentEvent

PROGRAM = "intentd"
ATTRIBUTION = Attribution(name="intentd", url="")
ASR_DESCRIPTION = ("Offline speech-to-intent: the transcript is the recognized command's "
                   "canonical sentence")
INTENT_DESCRIPTION = "Offline speech-to-intent: intents straight from audio"


def intents_of(backend: ModelBackend) -> list[str]:
    """The intents a verdict can name (the rejection class is not one)."""
    return [label for label in backend.labels if label != REJECT_LABEL]


def info_event(backend: ModelBackend, languages: Sequence[str], version: str) -> WyomingEvent:
    """``info``: an asr program and an intent program, each with the loaded model. The
    intent model also lists its intents under ``intents`` (clients that do not know the key
    skip it: wyoming's own parser does)."""
    langs = list(languages)
    intents = intents_of(backend)
    described = f"{ASR_DESCRIPTION}; intents: {', '.join(intents)}"
    asr = AsrProgram(
        name=PROGRAM, attribution=ATTRIBUTION, installed=True, description=ASR_DESCRIPTION,
        version=version, models=[AsrModel(
            name=backend.name, attribution=ATTRIBUTION, installed=True,
            description=described, version=version, languages=langs)],
        supports_transcript_streaming=False,
        # The end of a command comes from the client (audio-stop): its VAD decides.
        requires_external_vad=True)
    intent = IntentProgram(
        name=PROGRAM, attribution=ATTRIBUTION, installed=True,
        description=INTENT_DESCRIPTION, version=version, models=[IntentModel(
            name=backend.name, attribution=ATTRIBUTION, installed=True,
            description=f"intents: {', '.join(intents)}", version=version,
            languages=langs)])
    event = Info(asr=[asr], intent=[intent]).event()
    event.data["intent"][0]["models"][0]["intents"] = intents
    return event


def best_verdict(verdicts: Sequence[IntentEvent]) -> IntentEvent | None:
    """The session's command: its most confident ``intent`` verdict (None: no command)."""
    commands = [v for v in verdicts if v.type == "intent" and v.intent is not None]
    return max(commands, key=lambda v: v.score) if commands else None


def slot_values(verdict: IntentEvent) -> dict[str, str]:
    return {s.name: s.value for s in verdict.slots or ()}


def session_replies(verdicts: Sequence[IntentEvent], sentences: object,
                    language: str | None) -> list[WyomingEvent]:
    """``transcript`` then ``intent`` (or ``not-recognized``) for one audio session.

    ``sentences`` is the backend's :class:`~intentd.daemon.model.sentences.Sentences` or
    None (the intent's name as words then)."""
    best = best_verdict(verdicts)
    if best is None or best.intent is None:
        return [Transcript(text="", language=language).event(),
                NotRecognized(text="").event()]
    slots = slot_values(best)
    # The worker renders the sentence with the backend that judged the utterance (a model
    # reload may have swapped it since); render here only for events that lack it.
    text = getattr(best, "text", None) or render_text(sentences, best.intent,  # type: ignore[arg-type]
                                                      slots)
    entities = [Entity(name=name, value=value) for name, value in slots.items()]
    return [Transcript(text=text, language=language).event(),
            Intent(name=best.intent, entities=entities, text=text).event()]
