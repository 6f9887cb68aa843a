"""Rhasspy-style sentence templates: the intent spec YAML and its expansion.

Spec file::

    intents:
      balance:
        - "[please] (show | tell me) my $account balance"
    slots:
      account: [checking, savings, "credit card"]

Syntax: ``(a | b)`` alternatives, ``[x]`` optional (same as ``(x | )``), nesting, and
``$name`` references to a slot whose values are templates themselves. Text is joined
literally and whitespace is normalized afterwards, so ``light[s]`` gives ``light`` and
``lights``.

Scalars are read from YAML *nodes* (raw text, not resolved types) so that a value such
as ``on`` or ``12`` stays the string the author wrote, and every error can name the
file and line of the offending entry.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from intentd.daemon.errors import DataError

_SLOT_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_SPECIALS = "()[]|$"
# Above this many derivations a template is sampled instead of enumerated.
EXACT_LIMIT = 20000


class TemplateError(ValueError):
    """A template string is malformed; the spec loader adds file and line."""


# --- AST -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class SlotRef:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Seq, ...]


Node = Text | SlotRef | Seq | Alt


def parse(template: str) -> Alt:
    """Parse a template into an alternative set (a template may use top-level ``|``)."""
    pos = 0

    def parse_alt(close: str | None, open_at: int) -> tuple[Alt, int]:
        nonlocal pos
        options: list[Seq] = []
        items: list[Node] = []
        buf: list[str] = []

        def flush_text() -> None:
            if buf:
                items.append(Text("".join(buf)))
                buf.clear()

        while pos < len(template):
            c = template[pos]
            if c in "([":
                flush_text()
                start = pos
                pos += 1
                inner, pos = parse_alt(")" if c == "(" else "]", start)
                if c == "[":
                    inner = Alt((*inner.options, Seq(())))
                items.append(inner)
                continue
            if c in ")]":
                if close is None:
                    raise TemplateError(f"unbalanced '{c}' at column {pos + 1}")
                if c != close:
                    raise TemplateError(
                        f"'{c}' at column {pos + 1} closes the group opened at column "
                        f"{open_at + 1}; expected '{close}'"
                    )
                flush_text()
                options.append(Seq(tuple(items)))
                if all(not _has_content(o) for o in options) and len(options) == 1:
                    raise TemplateError(f"empty group at column {open_at + 1}")
                pos += 1
                return Alt(tuple(options)), pos
            if c == "|":
                flush_text()
                options.append(Seq(tuple(items)))
                items = []
                pos += 1
                continue
            if c == "$":
                m = _SLOT_RE.match(template, pos)
                if not m:
                    raise TemplateError(f"'$' at column {pos + 1} is not followed by a slot name")
                flush_text()
                items.append(SlotRef(m.group(1)))
                pos = m.end()
                continue
            buf.append(c)
            pos += 1
        if close is not None:
            raise TemplateError(f"unbalanced '{'(' if close == ')' else '['}' at column "
                                f"{open_at + 1} is never closed")
        flush_text()
        options.append(Seq(tuple(items)))
        return Alt(tuple(options)), pos

    alt, _ = parse_alt(None, 0)
    return alt


def _has_content(seq: Seq) -> bool:
    return any(not isinstance(i, Text) or i.text.strip() for i in seq.items)


def slot_refs(node: Node) -> set[str]:
    """Names of all slots referenced anywhere in ``node``."""
    if isinstance(node, SlotRef):
        return {node.name}
    if isinstance(node, Seq):
        return set().union(*(slot_refs(i) for i in node.items)) if node.items else set()
    if isinstance(node, Alt):
        return set().union(*(slot_refs(o) for o in node.options))
    return set()


def normalize(text: str) -> str:
    return " ".join(text.split())


# --- expansion -------------------------------------------------------------------------


class _Grammar:
    """Parsed slots with memoized counts; slot values are alternatives of one Alt."""

    def __init__(self, slots: dict[str, list[str]] | dict[str, tuple[str, ...]]) -> None:
        self.slots: dict[str, Alt] = {}
        for name, values in slots.items():
            opts: list[Seq] = []
            for v in values:
                opts.extend(parse(v).options)
            self.slots[name] = Alt(tuple(opts))
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

    def expand(self, node: Node) -> list[str]:
        if isinstance(node, Text):
            return [node.text]
        if isinstance(node, SlotRef):
            alt = self.resolve(node.name)
            self._active.add(node.name)
            try:
                return self.expand(alt)
            finally:
                self._active.discard(node.name)
        if isinstance(node, Alt):
            out: list[str] = []
            for o in node.options:
                out.extend(self.expand(o))
            return out
        parts = [""]
        for item in node.items:
            sub = self.expand(item)
            parts = [p + s for p in parts for s in sub]
        return parts

    def sample(self, node: Node, rng: random.Random) -> str:
        """One derivation, uniform over all derivations (alternatives weighted by size)."""
        if isinstance(node, Text):
            return node.text
        if isinstance(node, SlotRef):
            return self.sample(self.resolve(node.name), rng)
        if isinstance(node, Seq):
            return "".join(self.sample(i, rng) for i in node.items)
        weights = [self.count(o) for o in node.options]
        pick = rng.choices(node.options, weights=weights, k=1)[0]
        return self.sample(pick, rng)


def count_expansions(template: str, slots: dict[str, list[str]]) -> int:
    """Number of derivations (an upper bound on distinct sentences)."""
    return _Grammar(slots).count(parse(template))


def expand(template: str, slots: dict[str, list[str]]) -> list[str]:
    """Every sentence of ``template``: whitespace-normalized, deduplicated, sorted."""
    g = _Grammar(slots)
    return sorted({normalize(s) for s in g.expand(parse(template))} - {""})


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
        pool = sorted({normalize(s) for s in g.expand(root)} - {""})
        return sorted(pool) if len(pool) <= n else sorted(rng.sample(pool, n))
    found: set[str] = set()
    for _ in range(20 * n):
        s = normalize(g.sample(root, rng))
        if s:
            found.add(s)
        if len(found) >= n:
            break
    return sorted(found)


# --- spec file -------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    path: str
    intents: dict[str, tuple[str, ...]]
    slots: dict[str, tuple[str, ...]]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.intents)

    def sentences(self, intent: str, n: int, rng: random.Random) -> list[str]:
        """Up to ``n`` distinct sentences of one intent, spread evenly over its templates."""
        slots = {k: list(v) for k, v in self.slots.items()}
        templates = self.intents[intent]
        per = max(1, -(-n // len(templates)))
        pools = [sample_expansions(t, slots, per * 2, rng) for t in templates]
        for p in pools:
            rng.shuffle(p)
        out: list[str] = []
        seen: set[str] = set()
        idx = [0] * len(pools)
        order = list(range(len(pools)))
        while len(out) < n:
            progressed = False
            rng.shuffle(order)
            for t in order:
                while idx[t] < len(pools[t]) and pools[t][idx[t]] in seen:
                    idx[t] += 1
                if idx[t] < len(pools[t]) and len(out) < n:
                    s = pools[t][idx[t]]
                    seen.add(s)
                    out.append(s)
                    progressed = True
            if not progressed:
                break
        return out


def _scalar(node: yaml.Node, path: str, what: str) -> str:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode):
        raise DataError(f"{path}:{line}: {what} must be a string, got a YAML "
                        f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
    value = str(node.value)
    if not value.strip():
        raise DataError(f"{path}:{line}: {what} is empty; write a phrase or remove the entry")
    return value


def _string_list(node: yaml.Node, path: str, what: str) -> list[tuple[str, int]]:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.value.strip():
        return [(_scalar(node, path, what), line)]
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise DataError(f"{path}:{line}: {what} needs a non-empty list of strings")
    return [(_scalar(item, path, f"an entry of {what}"), item.start_mark.line + 1)
            for item in node.value]


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec YAML; every problem is a one-line DataError with file:line."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{p}: cannot read intent spec: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else p
        msg = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{where}: invalid YAML: {msg}") from None
    if not isinstance(root, yaml.MappingNode):
        raise DataError(f"{p}: an intent spec must be a mapping with keys 'intents' and 'slots'")
    sections: dict[str, yaml.Node] = {}
    for k, v in root.value:
        key = str(k.value)
        if key not in ("intents", "slots"):
            raise DataError(f"{p}:{k.start_mark.line + 1}: unknown top-level key '{key}'; "
                            "allowed: intents, slots")
        sections[key] = v
    if "intents" not in sections:
        raise DataError(f"{p}: missing top-level key 'intents' (intent name -> templates)")

    slots: dict[str, tuple[str, ...]] = {}
    slot_lines: dict[str, list[tuple[str, int]]] = {}
    snode = sections.get("slots")
    if snode is not None and not (isinstance(snode, yaml.ScalarNode) and snode.value == ""):
        if not isinstance(snode, yaml.MappingNode):
            raise DataError(f"{p}:{snode.start_mark.line + 1}: 'slots' must be a mapping "
                            "of slot name -> list of values")
        for k, v in snode.value:
            name = str(k.value)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise DataError(f"{p}:{k.start_mark.line + 1}: slot name '{name}' must be "
                                "letters, digits and '_'")
            slot_lines[name] = _string_list(v, p, f"slot '{name}'")
            slots[name] = tuple(s for s, _ in slot_lines[name])

    inode = sections["intents"]
    if not isinstance(inode, yaml.MappingNode) or not inode.value:
        raise DataError(f"{p}:{inode.start_mark.line + 1}: 'intents' must be a non-empty "
                        "mapping of intent name -> list of templates")
    intents: dict[str, tuple[str, ...]] = {}
    intent_lines: dict[str, list[tuple[str, int]]] = {}
    for k, v in inode.value:
        name = str(k.value)
        if name in intents:
            raise DataError(f"{p}:{k.start_mark.line + 1}: intent '{name}' is defined twice")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise DataError(f"{p}:{k.start_mark.line + 1}: intent name '{name}' must be "
                            "letters, digits, '_', '-' or '.'")
        if isinstance(v, yaml.ScalarNode) and v.value == "":
            raise DataError(f"{p}:{k.start_mark.line + 1}: intent '{name}' has no templates")
        intent_lines[name] = _string_list(v, p, f"intent '{name}'")
        intents[name] = tuple(s for s, _ in intent_lines[name])

    entries = [(f"slot '{n}'", e) for n, es in slot_lines.items() for e in es]
    entries += [(f"intent '{n}'", e) for n, es in intent_lines.items() for e in es]
    parsed: list[tuple[str, str, int, Alt]] = []
    for owner, (tmpl, line) in entries:
        try:
            parsed.append((owner, tmpl, line, parse(tmpl)))
        except TemplateError as exc:
            raise DataError(f"{p}:{line}: {exc} in {owner} template {tmpl!r}") from None
    grammar = _Grammar({k: list(v) for k, v in slots.items()})
    for owner, tmpl, line, node in parsed:
        try:
            grammar.count(node)
        except TemplateError as exc:
            raise DataError(f"{p}:{line}: {exc} in {owner} template {tmpl!r}") from None
    return Spec(path=p, intents=intents, slots=slots)
