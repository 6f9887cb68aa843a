"""A spec's canonical sentences and slot words, for models to say a verdict in words.

``sentence_patterns`` gives, per intent and per set of slots a sentence can fill, one
sentence pattern: from the first of the intent's templates that can fill that set, each
alternative's first option, an optional part only where it carries a wanted slot, and
``{slot}`` where a slot's words go (``"turn on the {room} light"``). ``slot_texts`` gives
the words most often spoken for each slot value (``"300" -> "five minutes"``). Both go
into spec.json and, through ``fit``, into the model config
(:mod:`intentd.daemon.model.sentences` reads them).
"""

from __future__ import annotations

import random
from collections import Counter

from intentd.trainer.synthesis.template_syntax import (
    Alt,
    Node,
    SlotRef,
    Subst,
    Tag,
    Text,
    normalize,
    parse,
)
from intentd.trainer.synthesis.templates import EXACT_LIMIT, Spec, _Grammar

Patterns = dict[frozenset[str], str]


def _keep(out: Patterns, key: frozenset[str], text: str) -> None:
    """The first text for ``key``, except that leaving an optional part out wins."""
    old = out.get(key)
    if old is None or (old.strip() and not text.strip()):
        out[key] = text
_MAX_PATTERNS = 256  # per node: the subsets of an intent's slots (6 slots: 64)
_SAMPLE = 2000  # derivations drawn for a tag too large to enumerate


def _patterns(g: _Grammar, node: Node, allowed: frozenset[str], seen: tuple[str, ...] = ()
              ) -> Patterns:
    """Slot set -> the first pattern of ``node`` that fills exactly that set."""
    if isinstance(node, Text):
        return {frozenset(): node.text}
    if isinstance(node, Tag):
        return {frozenset({node.name}): "{" + node.name + "}"} if node.name in allowed else {}
    if isinstance(node, Subst):
        return _patterns(g, node.node, allowed, seen)
    if isinstance(node, SlotRef):
        if node.name in seen:
            return {}
        return _patterns(g, g.resolve(node.name), allowed, (*seen, node.name))
    if isinstance(node, Alt):
        out: Patterns = {}
        for option in node.options:
            for key, text in _patterns(g, option, allowed, seen).items():
                _keep(out, key, text)
        return out
    acc: Patterns = {frozenset(): ""}
    for item in node.items:
        part = _patterns(g, item, allowed, seen)
        nxt: Patterns = {}
        for k1, t1 in acc.items():
            for k2, t2 in part.items():
                if k1 & k2:
                    continue  # a slot filled twice is not a sentence a verdict describes
                _keep(nxt, k1 | k2, t1 + t2)
                if len(nxt) >= _MAX_PATTERNS:
                    break
        acc = nxt
    return acc


def sentence_patterns(spec: Spec) -> dict[str, dict[str, str]]:
    """``{intent: {"level,room": "set the {room} light to {level}", ...}}``; keys are
    sorted, comma-joined slot names (``""``: no slot)."""
    g = spec._grammar()
    out: dict[str, dict[str, str]] = {}
    for intent, templates in spec.intents.items():
        allowed = frozenset(spec.intent_slots.get(intent, ()))
        found: Patterns = {}
        for template in templates:
            for key, text in _patterns(g, parse(template), allowed).items():
                found.setdefault(key, normalize(text))
        out[intent] = {",".join(sorted(k)): v for k, v in
                       sorted(found.items(), key=lambda kv: (len(kv[0]), sorted(kv[0])))}
    return out


def _tags(g: _Grammar, node: Node, out: list[Tag], seen: set[str]) -> None:
    if isinstance(node, Tag):
        out.append(node)
        _tags(g, node.node, out, seen)
    elif isinstance(node, Subst):
        _tags(g, node.node, out, seen)
    elif isinstance(node, SlotRef):
        if node.name not in seen:
            seen.add(node.name)
            _tags(g, g.resolve(node.name), out, seen)
    elif isinstance(node, Alt):
        for option in node.options:
            _tags(g, option, out, seen)
    elif not isinstance(node, Text):
        for item in node.items:
            _tags(g, item, out, seen)


def slot_texts(spec: Spec, seed: int = 0) -> dict[str, dict[str, str]]:
    """``{slot: {value: words}}``: for each value the words most often spoken for it (the
    first written among equals)."""
    g = spec._grammar()
    tags: list[Tag] = []
    seen: set[str] = set()
    for templates in spec.intents.values():
        for template in templates:
            _tags(g, parse(template), tags, seen)
    counts: dict[str, dict[str, Counter[str]]] = {}
    rng = random.Random(seed)
    for tag in tags:
        if g.count(tag.node) <= EXACT_LIMIT:
            derivations = g.derive(tag.node)
        else:
            derivations = [g.sample(tag.node, rng, uniform=True) for _ in range(_SAMPLE)]
        for d in derivations:
            value = normalize(d.output) if tag.value is None else tag.value
            per_value = counts.setdefault(tag.name, {}).setdefault(value, Counter())
            per_value[normalize(d.spoken)] += 1
    return {name: {value: c.most_common(1)[0][0] for value, c in sorted(by_value.items())}
            for name, by_value in sorted(counts.items())}
