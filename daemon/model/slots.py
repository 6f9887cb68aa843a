"""Slot values: what a model with slot heads reports beside the intent.

A model trained on a spec with slot tags (``$room{room}``) carries, in its config,
``slot_values`` (slot name -> the values it can report, in class order) and
``intent_slots`` (intent -> the slots its templates can fill). Each slot has one
classification head over "absent" + its values; the heads' logits come out of the model
concatenated in slot-name order (:class:`SlotSpace` keeps the offsets).

Decoding enforces the spec's structure: only the slots the chosen intent can take are
reported, each when its best value beats "absent".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ABSENT = ""  # class 0 of every slot head: the utterance does not fill this slot


@dataclass(frozen=True)
class SlotFill:
    """One slot heard in an utterance."""

    name: str
    value: str
    score: float  # the head's probability of this value


@dataclass(frozen=True)
class SlotSpace:
    """The slots of a model and the layout of their logits."""

    values: tuple[tuple[str, tuple[str, ...]], ...]  # (slot, its values), by slot name
    intent_slots: tuple[tuple[str, tuple[str, ...]], ...]  # (intent, slots it can take)

    @classmethod
    def from_config(cls, slot_values: Mapping[str, Sequence[str]] | None,
                    intent_slots: Mapping[str, Sequence[str]] | None) -> SlotSpace | None:
        """The space of a model config; None when the model has no slot heads."""
        if not slot_values:
            return None
        # Heads in slot-name order: a saved config.json sorts its keys.
        values = tuple((str(k), tuple(str(v) for v in slot_values[k]))
                       for k in sorted(slot_values))
        for name, vs in values:
            if not vs or ABSENT in vs or len(set(vs)) != len(vs):
                raise ValueError(f"slot {name!r}: values must be distinct, non-empty strings, "
                                 f"got {list(vs)}")
        known = {name for name, _ in values}
        by_intent = tuple((str(k), tuple(str(s) for s in ss))
                          for k, ss in (intent_slots or {}).items())
        for intent, ss in by_intent:
            unknown = sorted(set(ss) - known)
            if unknown:
                raise ValueError(f"intent {intent!r} takes slot(s) {unknown} that have no "
                                 f"head; known slots: {sorted(known)}")
        return cls(values, by_intent)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.values)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Classes per head: "absent" + the slot's values."""
        return tuple(1 + len(vs) for _, vs in self.values)

    @property
    def width(self) -> int:
        return sum(self.sizes)

    def class_id(self, slot: str, value: str | None) -> int:
        """The head class of ``value`` (None or absent: 0); KeyError names what is unknown."""
        vs = dict(self.values)[slot]
        if value is None or value == ABSENT:
            return 0
        try:
            return 1 + vs.index(value)
        except ValueError:
            raise KeyError(f"slot {slot!r} has no value {value!r}") from None

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``[width]`` (or ``[n, width]``) concatenated head outputs -> one array per slot."""
        out, start = {}, 0
        for (name, _), size in zip(self.values, self.sizes, strict=True):
            out[name] = flat[..., start : start + size]
            start += size
        return out

    def probabilities(self, flat_logits: np.ndarray) -> np.ndarray:
        """Softmax within each head of ``[n, width]`` logits."""
        z = np.asarray(flat_logits, dtype=np.float64)
        parts = []
        for part in self.split(z).values():
            e = np.exp(part - part.max(axis=-1, keepdims=True))
            parts.append(e / e.sum(axis=-1, keepdims=True))
        return np.concatenate(parts, axis=-1)

    def allowed(self, intent: str | None) -> tuple[str, ...]:
        """The slots ``intent`` can fill (none for no intent or an intent without slots)."""
        return dict(self.intent_slots).get(intent or "", ())

    def decode(self, intent: str | None, probs: np.ndarray) -> tuple[SlotFill, ...]:
        """The slots heard, for ``intent``, from one utterance's ``[width]`` probabilities."""
        allowed = set(self.allowed(intent))
        fills = []
        for (name, vs), p in zip(self.values, self.split(np.asarray(probs)).values(),
                                 strict=True):
            if name not in allowed:
                continue
            best = int(np.argmax(p))
            if best > 0:
                fills.append(SlotFill(name, vs[best - 1], float(p[best])))
        return tuple(fills)
