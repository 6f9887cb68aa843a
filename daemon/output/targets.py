"""Output targets by URI scheme: the one parser for ``--output`` and ``output.targets``.

Forms (as wyoming's ``from_uri``, with the short forms users already write):

- ``stdout``
- ``unix:PATH`` or ``unix://PATH``
- ``tcp:HOST:PORT``, ``tcp://HOST:PORT`` or ``tcp::PORT`` (HOST defaults to 127.0.0.1; an
  IPv6 host goes in brackets, ``tcp:[::1]:7700``; port 0 takes a free port, logged)

Parsing checks form only; binding (a missing directory, a port in use) is the sink's job.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES: tuple[str, ...] = ("stdout", "unix", "tcp")
FORMS = "stdout | unix:PATH | tcp:HOST:PORT"
DEFAULT_HOST = "127.0.0.1"  # loopback unless the user names another address


@dataclass(frozen=True)
class OutputTarget:
    """One parsed output target."""

    kind: str  # one of SCHEMES
    path: str | None = None  # unix
    host: str | None = None  # tcp
    port: int | None = None  # tcp

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp":
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        return self.kind


def _scheme(text: str) -> tuple[str, str]:
    scheme, sep, rest = text.partition(":")
    if not sep:
        return text, ""
    if rest.startswith("//"):
        rest = rest[2:]
    return scheme, rest


def parse_target(text: str) -> OutputTarget:
    """``text`` -> :class:`OutputTarget`; ValueError names the allowed forms."""
    text = text.strip()
    if text in ("stdout", "stdout:", "stdout://", "-"):
        return OutputTarget("stdout")
    scheme, rest = _scheme(text)
    if scheme == "unix":
        if not rest:
            raise ValueError("unix: needs a socket path, e.g. unix:/run/intentd/events.sock")
        return OutputTarget("unix", path=rest)
    if scheme == "tcp":
        host, sep, port_s = rest.rpartition(":")
        if not sep:
            host, port_s = "", rest
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
            raise ValueError("tcp:HOST:PORT with PORT 0-65535, e.g. tcp:127.0.0.1:7700")
        return OutputTarget("tcp", host=host or DEFAULT_HOST, port=int(port_s))
    raise ValueError(f"unknown output {text!r}; use {FORMS}")


def parse_targets(texts: tuple[str, ...] | list[str]) -> tuple[OutputTarget, ...]:
    """Every target, each once: a target listed twice would deliver every event twice."""
    out: list[OutputTarget] = []
    for text in texts:
        target = parse_target(text)
        if target in out:
            raise ValueError(f"output {text!r} is listed twice; list each target once")
        out.append(target)
    if not out:
        raise ValueError(f"no output targets; give at least one of {FORMS}")
    return tuple(out)
