"""The Wyoming server: a socket, an event loop in its own thread, and the hand-over between
that loop and the engine's threads.

::

    client ──audio──► session (loop) ──PushSource──► stream stage ──► model worker
    client ◄─replies── session (loop) ◄─call_soon_threadsafe── emit / stream_ended (worker)

The server is a sink of the router: :meth:`WyomingServer.emit` gets every event in the
worker thread and passes those of its streams to their connection in the loop, in order.
The engine calls :meth:`WyomingServer.stream_ended` once a stream's last event is emitted
(after them, so the loop sees the verdicts first); the stream is then forgotten by the
engine, whether its client is still there or not.

Lifecycle (the supervisor): :meth:`start` binds (a port in use is a ConfigError at once,
port 0's choice is logged), :meth:`serve` starts the loop once the engine runs,
:meth:`close` ends every connection (their streams end and are freed) and the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from wyoming.event import Event as WyomingEvent
from wyoming.server import AsyncEventHandler, AsyncServer, HandlerFactory

from intentd.daemon.audio.sources import AudioSource
from intentd.daemon.errors import ConfigError
from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import Event
from intentd.daemon.output.listeners import listen_tcp, listen_unix
from intentd.daemon.output.server_loop import CLOSE_S, ServerLoop
from intentd.daemon.output.targets import OutputTarget
from intentd.daemon.wyoming.replies import info_event
from intentd.daemon.wyoming.session import AudioSession, WyomingSession
from intentd.daemon.wyoming.settings import FORMS, parse_uri

if TYPE_CHECKING:
    from intentd.daemon.config import Config
    from intentd.daemon.engine.items import StreamEnded

log = logging.getLogger(__name__)

STREAM_PREFIX = "wyoming-"


class StreamHost(Protocol):
    """What the server needs of the supervisor."""

    backend: ModelBackend | None

    def add_input(self, name: str, source: AudioSource) -> None: ...

    def forget_input(self, name: str) -> None: ...


@dataclass(frozen=True)
class WyomingSettings:
    max_clients: int = 16
    languages: tuple[str, ...] = ("en",)
    speech_events: bool = False  # voice-started / voice-stopped
    unix_mode: int = 0o660
    version: str = ""


class _ListeningServer(AsyncServer):
    """wyoming's AsyncServer on a socket bound beforehand (so that a port in use fails the
    start-up at once, and port 0's choice is known before any client comes)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None

    async def run(self, handler_factory: HandlerFactory) -> None:
        await self.start(handler_factory)
        assert self._server is not None
        await self._server.serve_forever()

    async def start(self, handler_factory: HandlerFactory) -> None:
        callback = partial(self._handler_callback, handler_factory)
        if self._sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(callback, sock=self._sock)
        else:
            self._server = await asyncio.start_server(callback, sock=self._sock)

    async def stop(self, grace_s: float = CLOSE_S / 2) -> None:
        if self._server is not None:
            self._server.close()
        await super().stop()  # each connection: writer closed, reader at EOF
        tasks = list(self._handlers)
        if tasks:  # their ``disconnect`` ends the audio they had open
            await asyncio.wait(tasks, timeout=grace_s)


class WyomingServer:
    """The sink-shaped Wyoming server (see the module docstring)."""

    def __init__(self, target: OutputTarget, host: StreamHost,
                 settings: WyomingSettings | None = None) -> None:
        if target.kind not in ("tcp", "unix"):
            raise ConfigError(f"wyoming: {target} is not a Wyoming address; use {FORMS}")
        self.target = target
        self.settings = settings or WyomingSettings()
        self.name = f"wyoming:{target}"
        self._host = host
        self._sock: socket.socket | None = None
        self._loop = ServerLoop("wyoming")
        self._lock = threading.Lock()
        self._streams: dict[str, tuple[WyomingSession, AudioSession]] = {}
        self._sessions: set[WyomingSession] = set()  # loop thread only
        self._held: set[asyncio.Task[Any]] = set()
        self._numbers = itertools.count(1)
        self._closed = False
        self.closing = False
        self.counts = {"clients_accepted": 0, "clients_refused": 0, "audio_sessions": 0,
                       "streams_freed": 0}

    @classmethod
    def from_config(cls, cfg: Config, host: StreamHost) -> WyomingServer:
        from intentd.daemon import __version__

        w = cfg.wyoming
        return cls(parse_uri(w.uri), host, WyomingSettings(
            max_clients=w.max_clients, languages=tuple(w.languages),
            speech_events=cfg.output.speech_events,
            unix_mode=cfg.output.unix_mode_int, version=__version__))

    # --- lifecycle (the supervisor's thread) ----------------------------------------

    @property
    def address(self) -> str:
        """Where clients connect (the bound port for port 0)."""
        if self._sock is not None and self._sock.family != socket.AF_UNIX:
            host, port = self._sock.getsockname()[:2]
            return f"tcp://{host}:{port}"
        return f"unix://{self.target.path}"

    def start(self) -> None:
        """Bind; raises ConfigError (one line) when the address cannot be had."""
        where = f"wyoming {self.target}"
        if self.target.kind == "unix":
            assert self.target.path is not None
            self._sock = listen_unix(self.target.path, self.settings.unix_mode, where)
        else:
            assert self.target.host is not None and self.target.port is not None
            self._sock = listen_tcp(self.target.host, self.target.port, where)
        self.name = f"wyoming:{self.address}"
        log.info("wyoming: listening on %s (Home Assistant: add the Wyoming Protocol "
                 "integration with this host and port)", self.address)

    def serve(self) -> None:
        """Start answering clients (the engine must be running); returns once it does."""
        assert self._sock is not None, "start() first"
        self._loop.start(self._main, f"wyoming {self.address}")

    def close(self) -> None:
        """End every connection (their streams end and are freed), then the loop."""
        if self._closed:
            return
        self._closed = self.closing = True
        if not self._loop.stop() and self._sock is not None:
            self._sock.close()  # never served: the server did not take it over
        if self.target.kind == "unix" and self._sock is not None and self.target.path:
            with contextlib.suppress(OSError):
                os.unlink(self.target.path)

    async def _main(self) -> None:
        assert self._sock is not None and self._loop.stopping is not None
        server = _ListeningServer(self._sock)
        await server.start(self._new_session)
        self._loop.serving()
        await self._loop.stopping.wait()
        await server.stop()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    # --- the sink side (the model worker's thread) ----------------------------------

    def emit(self, event: Event) -> None:
        stream = getattr(event, "stream", None)
        if not isinstance(stream, str) or not stream.startswith(STREAM_PREFIX):
            return
        with self._lock:
            entry = self._streams.get(stream)
        if entry is not None:
            session, audio = entry
            self._loop.call_soon(session.on_event, audio, event)

    def stream_ended(self, item: StreamEnded) -> None:
        """Engine listener: every event of ``item.stream`` has been emitted."""
        with self._lock:
            entry = self._streams.pop(item.stream, None)
        if entry is None:
            return
        self._host.forget_input(item.stream)
        self.counts["streams_freed"] += 1
        session, audio = entry
        self._loop.call_soon(session.on_ended, audio)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            open_streams = len(self._streams)
        return {"sink": self.name, **self.counts, "connected": len(self._sessions),
                "streams_open": open_streams}

    # --- for the sessions (the loop's thread) ---------------------------------------

    @property
    def speech_events(self) -> bool:
        return self.settings.speech_events

    @property
    def language(self) -> str | None:
        return self.settings.languages[0] if self.settings.languages else None

    def info(self) -> WyomingEvent:
        backend = self._host.backend
        assert backend is not None
        return info_event(backend, self.settings.languages, self.settings.version)

    def sentences(self) -> object:
        return getattr(self._host.backend, "sentences", None)

    def new_stream_name(self, peer: str) -> str:
        return f"{STREAM_PREFIX}{peer}-{next(self._numbers)}"

    def open_stream(self, session: WyomingSession, audio: AudioSession) -> None:
        with self._lock:
            self._streams[audio.stream] = (session, audio)
        try:
            self._host.add_input(audio.stream, audio.source)
        except BaseException:
            with self._lock:
                self._streams.pop(audio.stream, None)
            raise
        self.counts["audio_sessions"] += 1

    def session_closed(self, session: WyomingSession) -> None:
        self._sessions.discard(session)

    def hold(self, task: asyncio.Task[Any]) -> None:
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    def _new_session(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> AsyncEventHandler:
        peer = _peer(writer)
        refuse = None
        if self.closing:
            refuse = "the server is stopping"
        elif len(self._sessions) >= self.settings.max_clients:
            refuse = (f"too many clients ({self.settings.max_clients}, wyoming.max_clients); "
                      "try again later")
            self.counts["clients_refused"] += 1
            log.warning("wyoming: client %s refused: %s", peer, refuse)
        session = WyomingSession(reader, writer, self, peer, refuse)
        if refuse is None:
            self._sessions.add(session)
            self.counts["clients_accepted"] += 1
            log.debug("wyoming: client %s connected", peer)
        return session


def _peer(writer: asyncio.StreamWriter) -> str:
    """``HOST:PORT`` of a TCP client, ``unix`` for a local one (a valid stream name part)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unix"
