"""Output targets by URI scheme: the one parser for ``--output`` and ``output.targets``.

Forms (as wyoming's ``from_uri``, with the short forms users already write):

- ``stdout``
- ``unix:PATH`` or ``unix://PATH``
- ``tcp:HOST:PORT``, ``tcp://HOST:PORT`` or ``tcp::PORT`` (HOST defaults to 127.0.0.1; an
  IPv6 host goes in brackets, ``tcp:[::1]:7700``; port 0 takes a free port, logged)
- ``mqtt://[USER[:PASS]@]HOST[:PORT][?site_id=ID&topic_prefix=P]`` (port 1883) and
  ``mqtts://...`` (TLS, port 8883): a broker, Rhasspy Hermes topics (:mod:`.mqtt`)
- ``exec:PROGRAM``: run PROGRAM for every intent, the event on its stdin (:mod:`.hooks`)

Where intentd listens instead (``--listen``, :mod:`intentd.daemon.telephony`), ``tcp`` and
``ws://HOST:PORT[/PATH]`` (a WebSocket server; PATH defaults to ``/``) are parsed here too,
with ``listen=True``: one parser for every address, and ``ws`` is refused as an output.

Parsing checks form only; binding (a missing directory, a port in use) is the sink's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES: tuple[str, ...] = ("stdout", "unix", "tcp", "mqtt", "mqtts", "exec")
FORMS = ("stdout | unix:PATH | tcp:HOST:PORT | mqtt://[USER:PASS@]HOST[:PORT] | mqtts://... | "
         "exec:PROGRAM")
DEFAULT_HOST = "127.0.0.1"  # loopback unless the user names another address
MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
MQTT_OPTIONS = ("site_id", "topic_prefix")


@dataclass(frozen=True)
class OutputTarget:
    """One parsed output target."""

    kind: str  # one of SCHEMES
    path: str | None = None  # unix; exec: the program; ws: the URL path
    host: str | None = None  # tcp, mqtt(s), ws
    port: int | None = None  # tcp, mqtt(s), ws
    user: str | None = None  # mqtt(s)
    # Kept out of repr and str: targets are logged.
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = ()  # mqtt(s): (name, value) from the query

    def option(self, name: str, default: str = "") -> str:
        return dict(self.options).get(name, default)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        if self.kind == "tcp":
            return f"tcp:{host}:{self.port}"
        if self.kind in MQTT_PORTS:
            who = f"{self.user}@" if self.user else ""
            return f"{self.kind}://{who}{host}:{self.port}"
        if self.kind == "exec":
            return f"exec:{self.path}"
        if self.kind == "ws":
            return f"ws://{host}:{self.port}{self.path}"
        return self.kind


def _scheme(text: str) -> tuple[str, str]:
    scheme, sep, rest = text.partition(":")
    if not sep:
        return text, ""
    if rest.startswith("//"):
        rest = rest[2:]
    return scheme, rest


def parse_target(text: str, listen: bool = False) -> OutputTarget:
    """``text`` -> :class:`OutputTarget`; ValueError names the allowed forms. ``listen``:
    an address to listen on, where ``ws://`` is valid too (module docstring)."""
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
    if scheme in MQTT_PORTS:
        return _mqtt(scheme, text)
    if scheme == "exec":
        if not rest.strip():
            raise ValueError("exec: needs a program, e.g. exec:/usr/local/bin/on-intent")
        return OutputTarget("exec", path=rest)
    if scheme == "ws":
        if not listen:
            raise ValueError(f"{text!r} is an address to listen on (--listen), not an "
                             f"output; use {FORMS}")
        return _ws(text)
    raise ValueError(f"unknown output {text!r}; use {FORMS}")


def _ws(text: str) -> OutputTarget:
    example = "ws://0.0.0.0:8765/media"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{exc}; e.g. {example}") from None
    if not text.startswith("ws://") or not url.hostname or port is None:
        raise ValueError(f"ws://HOST:PORT[/PATH] with a host and a port (0: a free one), "
                         f"e.g. {example}")
    if url.query or url.fragment or url.username:
        raise ValueError(f"ws:// listen address takes no user, query or fragment; e.g. "
                         f"{example}")
    return OutputTarget("ws", host=url.hostname, port=port, path=url.path or "/")


def _mqtt(scheme: str, text: str) -> OutputTarget:
    example = f"{scheme}://user:secret@127.0.0.1:{MQTT_PORTS[scheme]}?site_id=kitchen"
    if not text.startswith(f"{scheme}://"):
        raise ValueError(f"{scheme} targets are URLs: {example}")
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{exc}; e.g. {example}") from None
    if not url.hostname:
        raise ValueError(f"{scheme}:// needs a broker host, e.g. {example}")
    if url.path not in ("", "/"):
        raise ValueError(f"{scheme}:// takes no path ({url.path!r}); options go in the "
                         f"query, e.g. {example}")
    try:
        options = parse_qsl(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
    except ValueError:
        raise ValueError(f"bad query {url.query!r}; e.g. {example}") from None
    for name, value in options:
        if name not in MQTT_OPTIONS:
            raise ValueError(f"unknown {scheme} option {name!r}; known: "
                             f"{', '.join(MQTT_OPTIONS)}")
        if not value or (any(c in value for c in "#+/") and name == "site_id"):
            raise ValueError(f"{scheme} option {name}={value!r}: give a non-empty value "
                             "without MQTT wildcards")
    if len({n for n, _ in options}) != len(options):
        raise ValueError(f"{scheme} options given twice: {url.query!r}")
    return OutputTarget(scheme, host=url.hostname,
                        port=MQTT_PORTS[scheme] if port is None else port,
                        user=unquote(url.username) if url.username else None,
                        password=unquote(url.password) if url.password is not None else None,
                        options=tuple(options))


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
