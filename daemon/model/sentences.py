"""Canonical sentences: a verdict (intent + slot values) written back as words.

A model trained from a spec keeps, in its config, ``intent_sentences`` (intent -> the
slots a sentence fills, comma-joined and sorted -> a pattern such as
``"turn on the {room} light"``, taken from the intent's templates) and ``slot_texts``
(slot -> value -> the words most often spoken for it, e.g. ``"300" -> "five minutes"``).
Consumers that match sentences themselves (Home Assistant through Wyoming) get the
command as a sentence; events get each slot's spoken form.

A model without them (trained on plain labelled audio) still renders: the intent's name as
words, followed by the slot values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def slot_key(names: object) -> str:
    """The key of a set of slot names: sorted, comma-joined (``""`` for none)."""
    return ",".join(sorted(str(n) for n in names))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Sentences:
    patterns: Mapping[str, Mapping[str, str]]  # intent -> slot_key -> pattern
    slot_texts: Mapping[str, Mapping[str, str]]  # slot -> value -> spoken text

    @classmethod
    def from_config(cls, intent_sentences: object, slot_texts: object) -> Sentences | None:
        """None when the config has neither (or something unusable: rendering falls back)."""
        if not isinstance(intent_sentences, dict) and not isinstance(slot_texts, dict):
            return None
        pats = {str(i): {str(k): str(v) for k, v in m.items()}
                for i, m in (intent_sentences or {}).items() if isinstance(m, dict)}
        texts = {str(s): {str(k): str(v) for k, v in m.items()}
                 for s, m in (slot_texts or {}).items() if isinstance(m, dict)}
        return cls(pats, texts)

    def text_of(self, slot: str, value: str) -> str:
        """What a speaker says for ``value`` (the value itself when unknown)."""
        return self.slot_texts.get(slot, {}).get(value, value)

    def render(self, intent: str, slots: Mapping[str, str]) -> str:
        """The sentence for ``intent`` with ``slots`` (name -> value) filled in."""
        by_set = self.patterns.get(intent)
        texts = {n: self.text_of(n, v) for n, v in slots.items()}
        if by_set:
            pattern = by_set.get(slot_key(slots))
            if pattern is not None:
                try:
                    return pattern.format_map(texts)
                except (KeyError, IndexError, ValueError):
                    pass
        return fallback(intent, texts)


def fallback(intent: str, texts: Mapping[str, str]) -> str:
    """``set_brightness`` + {level: fifty percent} -> ``"set brightness fifty percent"``."""
    words = intent.replace("_", " ").replace("-", " ").strip()
    return " ".join([words, *(texts[n] for n in sorted(texts))]).strip()


def render_text(sentences: Sentences | None, intent: str, slots: Mapping[str, str]) -> str:
    """The canonical sentence for a verdict, with or without the model's patterns."""
    if sentences is None:
        return fallback(intent, dict(slots))
    return sentences.render(intent, slots)
