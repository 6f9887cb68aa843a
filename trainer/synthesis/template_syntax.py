"""Rhasspy-style template syntax: parsing a template into a small tree.

- ``(a | b)`` alternatives, ``[x]`` optional (``(x | )``), nesting; a template may use
  top-level ``|``;
- ``$name`` a slot list, whose values are templates themselves;
- ``{name}`` after a word, a group or a ``$slot`` *tags* it: the span fills slot ``name``
  and its (substituted) text is the value; ``{name:value}`` reports ``value`` instead;
- ``word:value`` or ``(group):value`` *substitutes*: the words are spoken, ``value`` is what
  is reported (``fifty:50``, ``(living room):living_room``); ``word:`` is spoken and dropped;
- ``(LO..HI)`` or ``(LO..HI,STEP)``: the integers in that range, spoken in words and
  reported as digits (``(0..100){level}``).

Text is joined literally and whitespace is normalized afterwards, so ``light[s]`` gives
``light`` and ``lights``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from intentd.trainer.synthesis.number_words import number_words

_SLOT_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_TAG_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
_VALUE_RE = re.compile(r":([^\s()\[\]|${}:]*)")
_RANGE_RE = re.compile(r"\(\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?:,\s*(\d+)\s*)?\)")
MAX_RANGE = 10000


class TemplateError(ValueError):
    """A template string is malformed; the spec loader adds file and line."""


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


@dataclass(frozen=True)
class Subst:
    """``node`` is spoken; ``value`` is what the output (and a tag around it) says."""

    node: Node
    value: str


@dataclass(frozen=True)
class Tag:
    """``node`` fills slot ``name``; ``value`` (when given) replaces its text as the value."""

    node: Node
    name: str
    value: str | None = None


Node = Text | SlotRef | Seq | Alt | Subst | Tag


def _number_range(lo: int, hi: int, step: int, col: int) -> Alt:
    if step < 1 or hi < lo:
        raise TemplateError(f"range at column {col} needs LO <= HI and STEP >= 1")
    if (hi - lo) // step + 1 > MAX_RANGE:
        raise TemplateError(f"range at column {col} has more than {MAX_RANGE} numbers")
    return Alt(tuple(Seq((Subst(Text(number_words(n)), str(n)),))
                     for n in range(lo, hi + 1, step)))


def parse(template: str) -> Alt:
    """Parse a template into an alternative set."""
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

        def bind_target(what: str, col: int) -> None:
            """Make the word, group or $slot just before ``pos`` the last item."""
            text = "".join(buf)
            if text:
                word = re.search(r"\S+$", text)
                if word is None:
                    raise TemplateError(f"{what} at column {col} follows a space; write it "
                                        "right after the word or group")
                buf.clear()
                if word.start():
                    items.append(Text(text[: word.start()]))
                items.append(Text(word.group()))
            elif not items:
                raise TemplateError(f"{what} at column {col} follows nothing; write it right "
                                    "after a word, a group or a $slot")

        while pos < len(template):
            c = template[pos]
            if c == "(" and (m := _RANGE_RE.match(template, pos)):
                flush_text()
                lo, hi, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
                items.append(_number_range(lo, hi, step, pos + 1))
                pos = m.end()
                continue
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
            if c == "{":
                m = _TAG_RE.match(template, pos)
                if not m:
                    raise TemplateError(f"'{{' at column {pos + 1} does not start a tag; write "
                                        "{name} or {name:value}")
                bind_target("a tag", pos + 1)
                items[-1] = Tag(items[-1], m.group(1),
                                None if m.group(2) is None else m.group(2).strip())
                pos = m.end()
                continue
            if c == "}":
                raise TemplateError(f"'}}' at column {pos + 1} closes no tag")
            if c == ":":
                m = _VALUE_RE.match(template, pos)
                assert m is not None  # the pattern matches an empty value too
                bind_target("a ':' substitution", pos + 1)
                items[-1] = Subst(items[-1], m.group(1))
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
    """Names of all slot lists referenced anywhere in ``node``."""
    if isinstance(node, SlotRef):
        return {node.name}
    if isinstance(node, Seq):
        return set().union(*(slot_refs(i) for i in node.items)) if node.items else set()
    if isinstance(node, Alt):
        return set().union(*(slot_refs(o) for o in node.options))
    if isinstance(node, Subst | Tag):
        return slot_refs(node.node)
    return set()


def tags(node: Node) -> set[str]:
    """Names of the slots ``node`` fills directly (not through slot lists)."""
    if isinstance(node, Tag):
        return {node.name} | tags(node.node)
    if isinstance(node, Seq):
        return set().union(*(tags(i) for i in node.items)) if node.items else set()
    if isinstance(node, Alt):
        return set().union(*(tags(o) for o in node.options))
    if isinstance(node, Subst):
        return tags(node.node)
    return set()


def normalize(text: str) -> str:
    return " ".join(text.split())
