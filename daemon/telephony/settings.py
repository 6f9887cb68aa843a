"""The telephony settings (``telephony:`` in config.yaml) and the listen addresses, parsed by
the one address parser (:func:`intentd.daemon.output.targets.parse_target`). Light: the
config imports it."""

from __future__ import annotations

from dataclasses import dataclass

from intentd.daemon.output.targets import OutputTarget, parse_target

FORMS = "ws://HOST:PORT[/PATH] | tcp://HOST:PORT"


def parse_listen(text: str) -> OutputTarget:
    """``--listen`` / ``telephony.listen`` -> a ws or tcp target; ValueError names the forms."""
    try:
        target = parse_target(text, listen=True)
    except ValueError as exc:
        target, why = None, str(exc)
    else:
        why = f"{target.kind} is not an ingest address"
    if target is None or target.kind not in ("ws", "tcp"):
        raise ValueError(f"{text!r}: {why}; use {FORMS}, e.g. ws://0.0.0.0:8765/media")
    return target


def parse_listens(texts: tuple[str, ...] | list[str]) -> tuple[OutputTarget, ...]:
    """Every address once (the same port twice would fail to bind anyway, less clearly)."""
    out: list[OutputTarget] = []
    for text in texts:
        target = parse_listen(text)
        if any((t.host, t.port) == (target.host, target.port) and t.port for t in out):
            raise ValueError(f"{text!r}: port {target.port} is listed twice")
        out.append(target)
    return tuple(out)


@dataclass(frozen=True)
class TelephonyConfig:
    """``telephony:`` (:mod:`intentd.daemon.telephony`); config.yaml documents each key."""

    listen: tuple[str, ...] = ()  # ws://HOST:PORT[/PATH] and/or tcp://HOST:PORT; () = off
    max_streams: int = 64  # live network streams (call tracks, TCP streams); more: refused
    start_timeout_s: float = 10.0  # connect -> ``start`` (ws) or the header line (tcp)
    idle_timeout_s: float = 30.0  # no message for this long: the connection is closed
    max_gap_s: float = 30.0  # a media timestamp jump filled with silence, at most
    block_ms: int = 100  # chunks are gathered into blocks this long for the stream stage
