"""Slot targets and scores for ``intentd-train fit``.

The slot space of a data set comes from its examples' ``slots`` (synth's metadata column):
every value seen becomes a class of its slot's head (sorted, so two fits of the same data
agree), and each intent may fill the slots its examples fill, plus those that synth's
``spec.json`` declares for it. A data set without slots gives an intent-only model.

Command acceptance is scored as the Picovoice speech-to-intent benchmark scores it: an
utterance counts only when the intent and the whole set of slot values are exact (a missed,
wrong or extra slot fails it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.model.slots import SlotFill, SlotSpace
from intentd.trainer.fitting.data import Example


def slot_space(examples: Iterable[Example], spec_json: Path | None = None
               ) -> SlotSpace | None:
    """The slots of ``examples`` (None when no example carries one)."""
    values: dict[str, set[str]] = {}
    by_intent: dict[str, set[str]] = {}
    for ex in examples:
        for name, value in ex.slots:
            values.setdefault(name, set()).add(value)
            by_intent.setdefault(ex.label, set()).add(name)
    if not values:
        return None
    for intent, names in _declared(spec_json).items():
        by_intent.setdefault(intent, set()).update(n for n in names if n in values)
    return SlotSpace.from_config({k: sorted(v) for k, v in values.items()},
                                 {k: sorted(v) for k, v in sorted(by_intent.items())})


def attach_sentences(config: Any, spec_json: Path) -> None:
    """A compact model's config gets spec.json's sentence patterns and slot words, so the
    daemon can say its verdicts in words (:mod:`intentd.daemon.model.sentences`)."""
    if hasattr(config, "slot_texts"):  # only compact configs carry them
        config.intent_sentences, config.slot_texts = sentences(spec_json)


def sentences(spec_json: Path) -> tuple[dict[str, dict[str, str]] | None,
                                        dict[str, dict[str, str]] | None]:
    """spec.json's sentence patterns and slot words (:mod:`...synthesis.canonical`), or
    None for data sets that lack them (made by an older synth, or not by synth)."""
    if not spec_json.is_file():
        return None, None
    try:
        spec = json.loads(spec_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{spec_json}: not valid JSON ({err}); re-run synth") from err

    def nested(key: str) -> dict[str, dict[str, str]] | None:
        got = spec.get(key) if isinstance(spec, dict) else None
        if not isinstance(got, dict):
            return None
        return {str(k): {str(a): str(b) for a, b in v.items()}
                for k, v in got.items() if isinstance(v, dict)}

    return nested("sentences"), nested("slot_texts")


def _declared(spec_json: Path | None) -> dict[str, list[str]]:
    if spec_json is None or not spec_json.is_file():
        return {}
    try:
        spec = json.loads(spec_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{spec_json}: not valid JSON ({err}); re-run synth") from err
    declared = spec.get("intent_slots") if isinstance(spec, dict) else None
    if not isinstance(declared, dict):
        return {}
    return {str(k): [str(s) for s in v] for k, v in declared.items() if isinstance(v, list)}


def targets(examples: Sequence[Example], space: SlotSpace) -> np.ndarray:
    """``[n, slots]`` head classes (0: absent); a value the space lacks is not scored
    (-100), so a test-only value never poisons training."""
    out = np.zeros((len(examples), len(space.names)), dtype=np.int64)
    column = {name: i for i, name in enumerate(space.names)}
    for row, ex in enumerate(examples):
        for name, value in ex.slots:
            try:
                out[row, column[name]] = space.class_id(name, value)
            except KeyError:
                out[row, column.get(name, 0)] = -100
    return out


def truth(ex: Example) -> dict[str, str]:
    return {name: value.strip() for name, value in ex.slots}


def filled(fills: Iterable[SlotFill]) -> dict[str, str]:
    return {f.name: f.value.strip() for f in fills}


def command_correct(intent: str | None, slots: Mapping[str, str], true_intent: str,
                    true_slots: Mapping[str, str]) -> bool:
    """Intent and every slot exact, no slot missing or extra (values compared stripped)."""
    return (intent == true_intent
            and {k: v.strip() for k, v in slots.items()}
            == {k: v.strip() for k, v in true_slots.items()})


def score(slot_logits: np.ndarray, intent_pred: Sequence[int], examples: Sequence[Example],
          labels: Sequence[str], space: SlotSpace) -> dict[str, Any]:
    """Command acceptance and per-slot accuracy of one split.

    Per-slot accuracy counts, for each slot, the utterances whose true intent can take it:
    right when the decoded value (or its absence) is the truth.
    """
    probs = space.probabilities(slot_logits)
    right = 0
    per_slot: dict[str, list[int]] = {name: [0, 0] for name in space.names}
    for ex, pred, p in zip(examples, intent_pred, probs, strict=True):
        intent = labels[int(pred)]
        said = filled(space.decode(intent, p))
        # Per-slot figures judge the slot heads alone: decoded under the true intent.
        alone = filled(space.decode(ex.label, p))
        true = truth(ex)
        right += command_correct(intent, said, ex.label, true)
        for name in space.allowed(ex.label):
            per_slot[name][0] += alone.get(name) == true.get(name)
            per_slot[name][1] += 1
    n = len(examples)
    return {
        "command_acceptance": round(right / n, 4) if n else None,
        "slot_accuracy": {name: round(ok / total, 4) for name, (ok, total)
                          in per_slot.items() if total},
    }
