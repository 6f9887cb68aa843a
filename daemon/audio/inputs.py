"""Input sources by form: the one parser for ``--input`` and the config's ``input``/``inputs``.

``[NAME=]SOURCE`` where SOURCE is

- ``mic`` (the default capture device) or ``mic:DEVICE`` (an index or part of a name, see
  ``--list-devices``);
- ``-`` or ``stdin``: raw PCM on standard input (rate, channels and encoding from settings);
- ``file:PATH`` or a plain path: a wav/flac/ogg file.

NAME (letters, digits, ``_ . : / -``, starting with a letter or digit) becomes the ``stream``
of every event from that input. Without one, a name is derived from the source (``mic``,
``mic:DEVICE``, ``stdin``, a file's stem) and made unique with ``-2``, ``-3``, ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KINDS: tuple[str, ...] = ("mic", "stdin", "file")
FORMS = "mic | mic:DEVICE | path to a wav/flac/ogg file | - (raw PCM on stdin)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.:/-]*$")
# A NAME= prefix: no path separator before the "=" (so "calls/a=b.wav" stays a path).
_NAMED_RE = re.compile(r"^([A-Za-z0-9][\w.:-]*)=(.+)$")


@dataclass(frozen=True)
class SourceSpec:
    """What a source text names, before anything is opened."""

    kind: str  # one of KINDS
    device: int | str | None = None  # mic: None = system default
    path: Path | None = None  # file

    @property
    def default_name(self) -> str:
        if self.kind == "mic":
            return "mic" if self.device is None else f"mic:{self.device}"
        if self.kind == "stdin":
            return "stdin"
        assert self.path is not None
        return self.path.stem or "file"


def parse_source(text: str) -> SourceSpec:
    """A source text -> :class:`SourceSpec`; ValueError names the allowed forms."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty input source; use {FORMS}")
    if text == "mic":
        return SourceSpec("mic")
    if text.startswith("mic:"):
        dev = text[len("mic:"):]
        if not dev:
            raise ValueError("mic: needs a device index or name, e.g. mic:1 or mic:USB")
        return SourceSpec("mic", device=int(dev) if dev.isdigit() else dev)
    if text in ("-", "stdin"):
        return SourceSpec("stdin")
    path = text[len("file:"):] if text.startswith("file:") else text
    if not path:
        raise ValueError("file: needs a path, e.g. file:calls/7.wav")
    return SourceSpec("file", path=Path(path))


def split_name(text: str) -> tuple[str | None, str]:
    """``"kitchen=mic:USB"`` -> ``("kitchen", "mic:USB")``; no name -> ``(None, text)``."""
    m = _NAMED_RE.match(text)
    if m is None:
        return None, text
    return m.group(1), m.group(2)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"stream name {name!r} is invalid: use letters, digits and _ . : / -, "
                         "starting with a letter or digit")
    return name


def unique_names(given: Sequence[str | None], sources: Sequence[SourceSpec]) -> list[str]:
    """One stream name per input: the given names (which must differ), else derived ones."""
    taken = [g for g in given if g is not None]
    for g in set(taken):
        if taken.count(g) > 1:
            raise ValueError(f"stream name {g!r} is given to more than one input; name each "
                             "input differently")
    used = set(taken)
    out: list[str] = []
    for name, spec in zip(given, sources, strict=True):
        if name is None:
            base = spec.default_name
            name, n = base, 2
            while name in used:
                name, n = f"{base}-{n}", n + 1
            used.add(name)
        out.append(name)
    return out
