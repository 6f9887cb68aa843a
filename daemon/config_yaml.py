"""Reading a daemon config file: YAML parsing plus where each key was written.

Knows nothing about which keys exist or what values they allow (that is
:mod:`intentd.daemon.config`); it only turns a file into a mapping, remembers the line of every
dotted key, and formats the ``FILE:LINE: ...`` prefix of :class:`ConfigError` messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from intentd.daemon.errors import ConfigError


class ConfigContext:
    """Where values came from, for error messages: file name and line per dotted key."""

    def __init__(self, origin: str, lines: dict[str, int]) -> None:
        self.origin = origin
        self.lines = lines
        self.from_override: set[str] = set()

    def where(self, key: str) -> str:
        if key in self.from_override:
            return "command line"
        line = self.lines.get(key)
        return f"{self.origin}:{line}" if line else self.origin

    def fail(self, key: str, value: object, allowed: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {key} = {value!r} is invalid; allowed: {allowed}")


def _key_lines(node: yaml.Node | None, origin: str, prefix: str = "") -> dict[str, int]:
    """Line number of each dotted key; rejects duplicate keys (YAML keeps the last silently)."""
    out: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return out
    for knode, vnode in node.value:
        key = f"{prefix}{knode.value}"
        line = knode.start_mark.line + 1
        if key in out:
            first = out[key]
            raise ConfigError(f"{origin}:{line}: duplicate key {key} (first set on line {first})")
        out[key] = line
        if not prefix:
            out.update(_key_lines(vnode, origin, f"{key}."))
            if isinstance(vnode, yaml.SequenceNode):  # a list: inputs[0], inputs[0].source
                for i, item in enumerate(vnode.value):
                    out[f"{key}[{i}]"] = item.start_mark.line + 1
                    if isinstance(item, yaml.MappingNode):
                        for k, _ in item.value:
                            out[f"{key}[{i}].{k.value}"] = k.start_mark.line + 1
    return out


# Sections whose scalars are command-line words: kept as written, because YAML 1.1 reads
# ``[/usr/local/bin/lights, on]`` as ["/usr/local/bin/lights", True].
VERBATIM_SECTIONS = ("hooks",)


def _verbatim(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_verbatim(n) for n in node.value]
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _verbatim(v) for k, v in node.value}
    return None


def _verbatim_sections(node: yaml.Node | None, data: dict[str, Any]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for knode, vnode in node.value:
        if knode.value in VERBATIM_SECTIONS and isinstance(vnode, yaml.MappingNode):
            data[knode.value] = _verbatim(vnode)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The file's top-level mapping and the line of each dotted key; ConfigError if unusable."""
    origin = str(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {origin} (pass --config PATH)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {origin}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = _key_lines(node, origin)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}" if mark else origin
        col = f" (column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}{col}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: YAML syntax error: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: the top level must be a mapping of sections (input:, vad:, ...)"
        )
    _verbatim_sections(node, data)
    return data, lines
