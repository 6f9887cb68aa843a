"""Where event lines go: stdout and fan-out sockets (unix, tcp).

A sink receives finished JSON lines (no newline) through :meth:`Sink.emit` from the one
thread that produces events (the worker). Socket sinks must never slow that thread down:
``emit`` only puts the line into an inbox and wakes a single selector thread that accepts
clients and writes to them with non-blocking sockets. Each client has a bounded buffer of
``client_buffer_events``; when a client stops reading and its buffer is full the OLDEST
event is dropped for that client alone (counted, warning rate-limited), so a stuck
consumer never delays the pipeline or the other clients.

Stdout is the exception on purpose: it is lossless and blocking, so a pipe consumer
(``intentd ... | jq``) paces the daemon instead of losing events; when the reader goes
away (EPIPE) the sink logs once and stops writing.

The socket sinks live in :mod:`intentd.daemon.output.socket_sinks` (re-exported here). New
transports (MQTT, Wyoming) implement the same :class:`Sink` protocol.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Protocol, TextIO, runtime_checkable

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.socket_sinks import TcpSink, UnixSocketSink

__all__ = ["Sink", "StdoutSink", "TcpSink", "UnixSocketSink", "make_sink", "open_sinks",
           "parse_mode"]

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Acquire resources (bind sockets); raises ConfigError on a bad target."""

    def emit(self, line: str) -> None:
        """Deliver one JSON line (without newline). Never raises for a lost consumer."""

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

    def start(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout

    def emit(self, line: str) -> None:
        if self._broken or self._stream is None:
            self._lost += 1
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._written += 1
        except (BrokenPipeError, ConnectionResetError):
            self._on_broken()
        except OSError as exc:
            log.warning("stdout: write failed (%s); no more events go to stdout", exc)
            self._on_broken()

    def _on_broken(self) -> None:
        self._broken = True
        self._lost += 1
        log.warning("stdout: the reader closed the pipe; no more events go to stdout")
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
    return mode


def make_sink(target: str, output_cfg: Any = None, stdout: TextIO | None = None) -> Sink:
    """One sink from ``stdout`` | ``unix:PATH`` | ``tcp:HOST:PORT`` (not started)."""
    buf = int(getattr(output_cfg, "client_buffer_events", 256))
    if target == "stdout":
        return StdoutSink(stdout)
    if target.startswith("unix:"):
        path = target[len("unix:"):]
        if not path:
            raise ConfigError("output unix:PATH needs a path, e.g. unix:/run/intentd.sock")
        mode = parse_mode(getattr(output_cfg, "unix_mode", "0660"))
        return UnixSocketSink(path, mode=mode, client_buffer_events=buf)
    if target.startswith("tcp:"):
        host, port = _parse_host_port(target[len("tcp:"):], target)
        return TcpSink(host, port, client_buffer_events=buf)
    raise ConfigError(f"output target {target!r}: expected stdout, unix:PATH or tcp:HOST:PORT")


def _parse_host_port(rest: str, target: str) -> tuple[str, int]:
    host, sep, port_s = rest.rpartition(":")
    if not sep:
        host, port_s = "", rest
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"output target {target!r}: port must be 0..65535, "
                          "e.g. tcp:127.0.0.1:7700")
    return host, port


def open_sinks(targets: list[str] | tuple[str, ...], output_cfg: Any = None,
               stdout: TextIO | None = None) -> list[Sink]:
    """Build and start every target; on a failure the ones already started are closed."""
    if not targets:
        raise ConfigError("output.targets is empty; give at least one of stdout, unix:PATH, "
                          "tcp:HOST:PORT")
    sinks: list[Sink] = []
    try:
        for target in targets:
            sink = make_sink(str(target), output_cfg, stdout)
            sink.start()
            sinks.append(sink)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
