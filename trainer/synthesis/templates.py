"""Expanding Rhasspy-style templates (:mod:`.template_syntax`) into sentences and their slots.

A derivation of a template is what a speaker says (``spoken``), what it means (``output``:
the spoken text with substitutions applied) and the slots its tags filled, in order. A
template without tags expands exactly as plain text always has; with tags, sampling draws
each tagged alternative uniformly (not by how many sentences it holds), so every value of a
slot is spoken about equally often.

The intent spec (``intents:``, ``slots:``) is read by :mod:`.spec_file` into :class:`Spec`.
Built-in slot lists (:mod:`.builtin_slots`) are there for every spec that does not define
a list of the same name.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

from intentd.trainer.synthesis import builtin_slots
from intentd.trainer.synthesis.template_syntax import (
    Alt,
    Node,
    Seq,
    SlotRef,
    Subst,
    Tag,
    TemplateError,
    Text,
    normalize,
    parse,
)

__all__ = ["EXACT_LIMIT", "Derivation", "Spec", "TemplateError", "Utterance",
           "count_expansions", "expand", "sample_expansions"]

# Above this many derivations a template is sampled instead of enumerated.
EXACT_LIMIT = 20000


@dataclass(frozen=True)
class SlotValue:
    name: str
    value: str  # what is reported (the substituted text, or the tag's own value)
    text: str  # what was spoken for it


@dataclass(frozen=True)
class Derivation:
    spoken: str
    output: str
    slots: tuple[SlotValue, ...] = ()


@dataclass(frozen=True)
class Utterance:
    """A sentence to synthesize and the slot values it carries (normalized)."""

    text: str
    slots: tuple[SlotValue, ...] = ()

    def slot_dict(self) -> dict[str, str]:
        return {s.name: s.value for s in self.slots}


def _cat(a: Derivation, b: Derivation) -> Derivation:
    return Derivation(a.spoken + b.spoken, a.output + b.output, a.slots + b.slots)


def _alt_of(values: tuple[str, ...] | list[str]) -> Alt:
    return Alt(tuple(o for v in values for o in parse(v).options))


@functools.lru_cache(maxsize=1)
def _builtin_alts() -> dict[str, Alt]:
    return {name: _alt_of(values) for name, values in builtin_slots.lists().items()}


class _Grammar:
    """Parsed slot lists with memoized counts; a list's values are the options of one Alt."""

    def __init__(self, slots: dict[str, list[str]] | dict[str, tuple[str, ...]]) -> None:
        self.slots: dict[str, Alt] = dict(_builtin_alts())
        for name, values in slots.items():
            self.slots[name] = _alt_of(values)
        self._count: dict[int, int] = {}
        self._active: set[str] = set()

    def resolve(self, name: str) -> Alt:
        if name not in self.slots:
            raise TemplateError(f"undefined slot ${name}")
        if name in self._active:
            raise TemplateError(f"slot ${name} refers to itself")
        return self.slots[name]

    def count(self, node: Node) -> int:
        if isinstance(node, Text):
            return 1
        if isinstance(node, SlotRef):
            alt = self.resolve(node.name)
            self._active.add(node.name)
            try:
                return self.count(alt)
            finally:
                self._active.discard(node.name)
        if isinstance(node, Subst | Tag):
            return self.count(node.node)
        key = id(node)
        if key in self._count:
            return self._count[key]
        if isinstance(node, Seq):
            n = 1
            for i in node.items:
                n *= self.count(i)
        else:
            n = sum(self.count(o) for o in node.options)
        self._count[key] = n
        return n

    def derive(self, node: Node) -> list[Derivation]:
        """Every derivation of ``node``."""
        if isinstance(node, Text):
            return [Derivation(node.text, node.text)]
        if isinstance(node, SlotRef):
            alt = self.resolve(node.name)
            self._active.add(node.name)
            try:
                return self.derive(alt)
            finally:
                self._active.discard(node.name)
        if isinstance(node, Subst):
            return [Derivation(d.spoken, node.value, d.slots) for d in self.derive(node.node)]
        if isinstance(node, Tag):
            return [self._tagged(node, d) for d in self.derive(node.node)]
        if isinstance(node, Alt):
            return [d for o in node.options for d in self.derive(o)]
        parts = [Derivation("", "")]
        for item in node.items:
            sub = self.derive(item)
            parts = [_cat(p, s) for p in parts for s in sub]
        return parts

    @staticmethod
    def _tagged(tag: Tag, d: Derivation) -> Derivation:
        value = normalize(d.output) if tag.value is None else tag.value
        return Derivation(d.spoken, d.output,
                          (*d.slots, SlotValue(tag.name, value, normalize(d.spoken))))

    def sample(self, node: Node, rng: random.Random, uniform: bool = False) -> Derivation:
        """One derivation: uniform over all derivations, except that the alternatives right
        under a tag are drawn uniformly (``uniform``), which balances slot values."""
        if isinstance(node, Text):
            return Derivation(node.text, node.text)
        if isinstance(node, SlotRef):
            return self.sample(self.resolve(node.name), rng, uniform)
        if isinstance(node, Subst):
            d = self.sample(node.node, rng, uniform)
            return Derivation(d.spoken, node.value, d.slots)
        if isinstance(node, Tag):
            return self._tagged(node, self.sample(node.node, rng, uniform=True))
        if isinstance(node, Seq):
            out = Derivation("", "")
            for i in node.items:
                out = _cat(out, self.sample(i, rng))
            return out
        if uniform:
            pick = node.options[rng.randrange(len(node.options))]
        else:
            weights = [self.count(o) for o in node.options]
            pick = rng.choices(node.options, weights=weights, k=1)[0]
        return self.sample(pick, rng)

    def filled(self, node: Node) -> set[str]:
        """Slots ``node`` can fill: its own tags and those inside the slot lists it uses."""
        seen: set[str] = set()

        def walk(n: Node) -> set[str]:
            if isinstance(n, SlotRef):
                if n.name in seen:
                    return set()
                seen.add(n.name)
                return walk(self.resolve(n.name))
            if isinstance(n, Tag):
                return {n.name} | walk(n.node)
            if isinstance(n, Subst):
                return walk(n.node)
            if isinstance(n, Seq):
                return set().union(*(walk(i) for i in n.items)) if n.items else set()
            if isinstance(n, Alt):
                return set().union(*(walk(o) for o in n.options))
            return set()

        return walk(node)


def _finish(d: Derivation) -> Utterance:
    return Utterance(normalize(d.spoken), d.slots)


def count_expansions(template: str, slots: dict[str, list[str]]) -> int:
    """Number of derivations (an upper bound on distinct sentences)."""
    return _Grammar(slots).count(parse(template))


def expand(template: str, slots: dict[str, list[str]]) -> list[str]:
    """Every spoken sentence of ``template``: whitespace-normalized, deduplicated, sorted."""
    g = _Grammar(slots)
    return sorted({normalize(d.spoken) for d in g.derive(parse(template))} - {""})


def expand_utterances(template: str, slots: dict[str, list[str]]) -> list[Utterance]:
    """Every derivation of ``template`` with its slot values, one per spoken sentence
    (the first derivation of a sentence wins), sorted by text."""
    out: dict[str, Utterance] = {}
    for d in _Grammar(slots).derive(parse(template)):
        u = _finish(d)
        if u.text:
            out.setdefault(u.text, u)
    return [out[k] for k in sorted(out)]


def sample_expansions(
    template: str, slots: dict[str, list[str]], n: int, rng: random.Random
) -> list[str]:
    """Up to ``n`` distinct sentences of ``template`` chosen at random (sorted).

    Small templates are enumerated and subsampled; large ones draw random derivations
    until ``n`` distinct sentences are found or ``20 * n`` attempts are spent.
    """
    g = _Grammar(slots)
    root = parse(template)
    if g.count(root) <= EXACT_LIMIT:
        pool = sorted({normalize(d.spoken) for d in g.derive(root)} - {""})
        return sorted(pool) if len(pool) <= n else sorted(rng.sample(pool, n))
    found: set[str] = set()
    for _ in range(20 * n):
        s = normalize(g.sample(root, rng).spoken)
        if s:
            found.add(s)
        if len(found) >= n:
            break
    return sorted(found)


def sample_utterances(g: _Grammar, root: Node, n: int, rng: random.Random) -> list[Utterance]:
    """Up to ``n`` distinct sentences with slots, drawn with balanced slot values."""
    found: dict[str, Utterance] = {}
    for _ in range(20 * n):
        u = _finish(g.sample(root, rng))
        if u.text:
            found.setdefault(u.text, u)
        if len(found) >= n:
            break
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Spec:
    path: str
    intents: dict[str, tuple[str, ...]]
    slots: dict[str, tuple[str, ...]]
    # intent -> the slots its templates can fill (sorted); filled in by the spec loader
    intent_slots: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.intents)

    def _grammar(self) -> _Grammar:
        return _Grammar({k: list(v) for k, v in self.slots.items()})

    def sentences(self, intent: str, n: int, rng: random.Random) -> list[str]:
        """Up to ``n`` distinct sentences of one intent, spread evenly over its templates."""
        slots = {k: list(v) for k, v in self.slots.items()}
        templates = self.intents[intent]
        per = max(1, -(-n // len(templates)))
        pools = [sample_expansions(t, slots, per * 2, rng) for t in templates]
        return [u.text for u in _interleave([[Utterance(s) for s in p] for p in pools], n,
                                            rng)]

    def utterances(self, intent: str, n: int, rng: random.Random) -> list[Utterance]:
        """Like :meth:`sentences`, with each sentence's slot values. An intent without
        tags gives exactly :meth:`sentences` (and draws the same random numbers)."""
        g = self._grammar()
        roots = [parse(t) for t in self.intents[intent]]
        if not any(g.filled(r) for r in roots):
            return [Utterance(s) for s in self.sentences(intent, n, rng)]
        per = max(1, -(-n // len(roots)))
        pools = [sample_utterances(g, r, per * 2, rng) for r in roots]
        return _interleave(pools, n, rng)


def _interleave(pools: list[list[Utterance]], n: int, rng: random.Random) -> list[Utterance]:
    """Round-robin over shuffled per-template pools, skipping sentences already taken."""
    for p in pools:
        rng.shuffle(p)
    out: list[Utterance] = []
    seen: set[str] = set()
    idx = [0] * len(pools)
    order = list(range(len(pools)))
    while len(out) < n:
        progressed = False
        rng.shuffle(order)
        for t in order:
            while idx[t] < len(pools[t]) and pools[t][idx[t]].text in seen:
                idx[t] += 1
            if idx[t] < len(pools[t]) and len(out) < n:
                u = pools[t][idx[t]]
                seen.add(u.text)
                out.append(u)
                progressed = True
        if not progressed:
            break
    return out
