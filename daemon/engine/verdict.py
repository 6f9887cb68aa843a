"""From model probabilities to an intent event: the rules every verdict follows (threshold,
rejection class, top-k, slots, sentence), whichever way its utterance was ended."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import (
    REJECT_LABEL,
    CallInfo,
    Event,
    IntentEvent,
    LabelScore,
    SlotScore,
)
from intentd.daemon.segmentation.splitter import Scored


def combine_windows(window_probs: np.ndarray, rule: str) -> np.ndarray:
    """Verdict probabilities from per-window probabilities ``[n, L]`` (``mean`` / ``max``).

    ``max`` takes each label's best window and renormalizes, so a short command inside a
    long utterance is not averaged away.
    """
    p = np.asarray(window_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"need [n>0, labels] window probabilities, got shape {p.shape}")
    if rule == "mean":
        out = p.mean(axis=0)
    elif rule == "max":
        out = p.max(axis=0)
        total = out.sum()
        out = out / total if total > 0 else np.full_like(out, 1.0 / out.size)
    else:
        raise ValueError(f"combine_windows handles 'mean' and 'max', got {rule!r}")
    return out


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> tuple[LabelScore, ...]:
    """Best ``k`` labels, highest first; ties keep the model's label order."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[: max(1, k)]
    return tuple(LabelScore(labels[i], float(p[i])) for i in order)


def scored(backend: ModelBackend, probs: np.ndarray, slot_probs: np.ndarray | None
           ) -> Scored:
    p = np.asarray(probs, dtype=np.float64)
    best = int(np.argmax(p))
    label = backend.labels[best]
    heard = slots_of(backend, label if label != REJECT_LABEL else None, slot_probs) or ()
    return Scored(p, slot_probs, label, float(p[best]),
                  tuple((s.name, s.value) for s in heard))


def slots_of(backend: ModelBackend, intent: str | None, slot_probs: np.ndarray | None
             ) -> tuple[SlotScore, ...] | None:
    """The event's slots: None for a model without slot heads; the slots ``intent`` can
    take that were heard otherwise (none for a no_match, or under a window verdict)."""
    space = getattr(backend, "slot_space", None)
    if space is None:
        return None
    if slot_probs is None:
        return ()
    sentences = getattr(backend, "sentences", None)
    return tuple(SlotScore(f.name, f.value, f.score,
                           sentences.text_of(f.name, f.value) if sentences else None)
                 for f in space.decode(intent, slot_probs))


@dataclass(frozen=True)
class Where:
    """Which utterance of which stream, and how it was ended; times in seconds."""

    utterance_id: int
    stream: str
    start_s: float
    end_s: float
    end: str
    decided_s: float
    windows: int
    call: CallInfo | None


def intent_event(backend: ModelBackend, probs: np.ndarray, slot_probs: np.ndarray | None,
                 where: Where, threshold: float, k: int, latency_ms: float, ts: float,
                 model: str) -> IntentEvent:
    labels = tuple(backend.labels)
    top = top_k(probs, labels, k)
    best = top[0]
    matched = best.score >= threshold and best.intent != REJECT_LABEL
    slots = slots_of(backend, best.intent if matched else None, slot_probs)
    sentences = getattr(backend, "sentences", None)
    text = None
    if sentences is not None:
        text = (sentences.render(best.intent, {s.name: s.value for s in slots or ()})
                if matched else "")
    return IntentEvent(
        type="intent" if matched else "no_match", intent=best.intent if matched else None,
        score=best.score, top=top, utterance_id=where.utterance_id, stream=where.stream,
        start_s=where.start_s, end_s=where.end_s, windows=where.windows,
        latency_ms=latency_ms, ts=ts, model=model, slots=slots, text=text, call=where.call,
        end=where.end, decided_s=where.decided_s)


def event_kind(event: Event) -> str:
    return event.type if isinstance(event, IntentEvent) else event.TYPE
