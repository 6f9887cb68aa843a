"""The Wyoming server's settings (``wyoming:`` in config.yaml) and its address,
``tcp://HOST:PORT`` or ``unix://PATH``, parsed by the outputs' one parser
(:mod:`intentd.daemon.output.targets`). Light: the config imports it."""

from __future__ import annotations

from dataclasses import dataclass

from intentd.daemon.output.targets import OutputTarget, parse_target

FORMS = "tcp://HOST:PORT | unix://PATH"


def parse_uri(text: str) -> OutputTarget:
    """``--wyoming`` / ``wyoming.uri`` -> a tcp or unix target; ValueError names the forms."""
    try:
        target = parse_target(text)
    except ValueError:
        target = None
    if target is None or target.kind not in ("tcp", "unix"):
        raise ValueError(f"{text!r} is not a Wyoming address; use {FORMS}, e.g. "
                         "tcp://0.0.0.0:10300")
    return target


@dataclass(frozen=True)
class WyomingConfig:
    """``wyoming:`` (:mod:`intentd.daemon.wyoming`); config.yaml documents each key."""

    uri: str = ""  # tcp://HOST:PORT | unix://PATH; "" = off
    max_clients: int = 16  # connections at once; more are refused with an error event
    languages: tuple[str, ...] = ("en",)  # advertised in info; the first names transcripts
