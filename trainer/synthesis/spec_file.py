"""Reading an intent spec YAML into a :class:`~.templates.Spec`, with FILE:LINE errors.

Spec file::

    intents:
      set_brightness:
        - "set [the] $room{room} light[s] to $percentage{level}"
      lights_on:
        - "(turn | switch) on [the] $room{room} light[s]"
    slots:
      room: [kitchen, bedroom, "(living room):living_room"]

Template syntax: :mod:`.template_syntax`; built-in slot lists (``$integer``,
``$percentage``, ``$temperature``, ``$duration``): :mod:`.builtin_slots`.

Scalars are read from YAML *nodes* (raw text, not resolved types) so that a value such
as ``on`` or ``12`` stays the string the author wrote, and every error can name the
file and line of the offending entry.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from intentd.daemon.errors import DataError
from intentd.trainer.synthesis.template_syntax import Alt, TemplateError, parse
from intentd.trainer.synthesis.templates import Spec, _Grammar


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
            if name in slots:
                raise DataError(f"{p}:{k.start_mark.line + 1}: slot '{name}' is defined twice")
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
    intent_slots = {name: tuple(sorted(set().union(*(
        grammar.filled(node) for owner, _, _, node in parsed if owner == f"intent '{name}'"))))
        for name in intents}
    return Spec(path=p, intents=intents, slots=slots, intent_slots=intent_slots)
