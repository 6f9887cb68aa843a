"""Where events go: stdout and fan-out sockets (unix, tcp).

A sink receives typed events (:mod:`.events`) through :meth:`Sink.emit` from the one
thread that produces them (the model worker, through the router) and serializes them
itself: these write intentd's JSON lines; an MQTT or Wyoming sink writes its protocol's
payloads. Socket sinks must never slow the worker down: ``emit`` only puts the line into an
inbox and wakes a single selector thread that accepts clients and writes to them with
non-blocking sockets. Each client has a bounded buffer of ``client_buffer_events``; when a
client stops reading and its buffer is full the OLDEST event is dropped for that client
alone (counted, warning rate-limited), so a stuck consumer never delays the pipeline or the
other clients.

Stdout is the exception on purpose: it is lossless and blocking, so a pipe consumer
(``intentd ... | jq``) paces the daemon instead of losing events. When the reader goes away
(EPIPE) or a write fails (a full disk) the sink logs once and stops writing; when no output
is left the supervisor stops the daemon (exit 0 for a closed pipe, 1 for a failed write).

Targets are parsed in one place (:mod:`.targets`); the socket sinks live in
:mod:`.socket_sinks` (re-exported here).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO, runtime_checkable

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import Event, to_json_line
from intentd.daemon.output.socket_sinks import TcpSink, UnixSocketSink
from intentd.daemon.output.targets import FORMS, OutputTarget, parse_target

__all__ = ["Sink", "StdoutSink", "TcpSink", "UnixSocketSink", "make_sink", "open_sinks",
           "parse_mode"]

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Acquire resources (bind sockets); raises ConfigError on a bad target."""

    def emit(self, event: Event) -> None:
        """Deliver one event, serialized as this sink's transport wants it. Never raises
        for a lost consumer."""

    def close(self) -> None:
        """Flush what can be flushed within a short deadline, then release everything."""

    def stats(self) -> dict[str, Any]:
        """Counters for the exit summary (safe to call from any thread)."""


class StdoutSink:
    """Lossless, blocking line writer; stops quietly when the reader closes the pipe."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.name = "stdout"
        self._stream = stream
        self._broken = False
        self._written = 0
        self._lost = 0
        # Why writing stopped when it was not the reader closing the pipe (then 1, not 0).
        self.error: str | None = None

    def start(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout

    def emit(self, event: Event) -> None:
        if self._broken or self._stream is None:
            self._lost += 1
            return
        line = to_json_line(event)
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._written += 1
        except (BrokenPipeError, ConnectionResetError):
            log.warning("stdout: the reader closed the pipe; no more events go to stdout")
            self._on_broken()
        except (OSError, ValueError) as exc:
            self.error = f"cannot write events to stdout ({getattr(exc, 'strerror', None) or exc})"
            log.error("stdout: %s; no more events go to stdout", self.error)
            self._on_broken()

    @property
    def dead(self) -> bool:
        """Nothing will be written any more."""
        return self._broken

    def _on_broken(self) -> None:
        self._broken = True
        self._lost += 1
        # Point the fd at /dev/null so the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = self._stream.fileno()  # type: ignore[union-attr]
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)

    def close(self) -> None:
        if self._stream is not None and not self._broken:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()

    def stats(self) -> dict[str, Any]:
        return {"sink": self.name, "written": self._written, "lost": self._lost,
                "broken_pipe": self._broken}


def parse_mode(value: object) -> int:
    """``"0660"``/``"660"``/``0o660`` -> 0o660."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ConfigError(f"output.unix_mode: {value!r} is not an octal file mode; "
                              "use e.g. \"0660\"") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"output.unix_mode: {value!r} is out of range; use e.g. \"0660\"")
    if mode & 0o002:
        raise ConfigError(f"output.unix_mode: {value!r} lets any local user connect and read "
                          "every event; use e.g. \"0660\" and a group")
    return mode


def make_sink(target: OutputTarget | str, output_cfg: Any = None,
              stdout: TextIO | None = None, mqtt: Any = None) -> Sink:
    """One sink for a target (parsed by :func:`.targets.parse_target` if a string; not
    started). ``mqtt``: the config's ``mqtt:`` section, for MQTT targets."""
    if isinstance(target, str):
        try:
            target = parse_target(target)
        except ValueError as exc:
            raise ConfigError(f"output {target!r}: {exc}") from None
    buf = int(getattr(output_cfg, "client_buffer_events", 256))
    if target.kind == "stdout":
        return StdoutSink(stdout)
    if target.kind == "unix":
        assert target.path is not None
        mode = parse_mode(getattr(output_cfg, "unix_mode", "0660"))
        return UnixSocketSink(target.path, mode=mode, client_buffer_events=buf)
    if target.kind == "tcp":
        assert target.host is not None and target.port is not None
        return TcpSink(target.host, target.port, client_buffer_events=buf)
    if target.kind in ("mqtt", "mqtts"):
        from intentd.daemon.output.mqtt import MqttSink

        return MqttSink(target, mqtt)
    if target.kind == "exec":
        from intentd.daemon.output.hooks import HookSink, hook_settings

        assert target.path is not None
        return HookSink([("*", (target.path,))], hook_settings(output_cfg), name=str(target))
    raise ConfigError(f"output {target}: expected {FORMS}")


def open_sinks(targets: Sequence[OutputTarget | str], output_cfg: Any = None,
               stdout: TextIO | None = None, mqtt: Any = None,
               hooks: Sequence[tuple[str, tuple[str, ...]]] = ()) -> list[Sink]:
    """Build and start every target, and the per-intent ``hooks`` (intent -> argv) as one
    more sink; on a failure the ones already started are closed."""
    if not targets:
        raise ConfigError(f"output.targets is empty; give at least one of {FORMS}")
    made: list[Sink] = [make_sink(t, output_cfg, stdout, mqtt) for t in targets]
    if hooks:
        from intentd.daemon.output.hooks import HookSink, hook_settings

        made.append(HookSink(list(hooks), hook_settings(output_cfg), name="hooks"))
    sinks: list[Sink] = []
    try:
        for sink in made:
            sink.start()
            sinks.append(sink)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
