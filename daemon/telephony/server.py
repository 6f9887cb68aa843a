"""The telephony server: the listening sockets, an event loop in its own thread, admission,
and the hand-over of each track's stream to the engine.

::

    platform ──ws: start, media..──► CallSession (loop) ──Track──► PushSource ──► stream stage
    other    ──tcp: header, audio──► handle_tcp (loop)  ──Track──┘          (one per track)

Verdicts go to the configured outputs like every stream's (nothing goes back to the
sender: media streams are one-way). Streams are named ``<callSid or streamSid>/<track>``
(ws) or by the header (tcp) and carry the call's ids (:class:`CallInfo`) in their events.

Admission (``telephony.max_streams``): a stream holds its slot from its ``start`` (or
header) until the engine has emitted its last event and forgotten it; a connection that
would go over is refused with a reason (ws: close code 1013 "try again later"; tcp: a
one-line JSON error), never accepted and starved. ``GET /health`` on a ws address answers
200 with the figures, or 503 while full, so a load balancer can send calls elsewhere.

Lifecycle (the supervisor): :meth:`start` binds (a port in use is a ConfigError at once,
port 0's choice is logged), :meth:`serve` starts the loop once the engine runs,
:meth:`close` ends every connection (their streams end and are freed) and the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Protocol

from websockets.asyncio.server import Server as WsServer

from intentd.daemon.audio.sources import AudioSource
from intentd.daemon.errors import ConfigError, IntentdError
from intentd.daemon.output.events import CallInfo
from intentd.daemon.output.listeners import listen_tcp
from intentd.daemon.output.server_loop import CLOSE_S, ServerLoop
from intentd.daemon.output.targets import OutputTarget
from intentd.daemon.telephony.settings import TelephonyConfig, parse_listens
from intentd.daemon.telephony.tcp import MAX_HEADER_BYTES, handle_tcp
from intentd.daemon.telephony.track import Track
from intentd.daemon.telephony.ws import serve_ws

if TYPE_CHECKING:
    from intentd.daemon.config import Config
    from intentd.daemon.engine.items import StreamEnded

log = logging.getLogger(__name__)



class StreamHost(Protocol):
    """What the server needs of the supervisor."""

    def add_input(self, name: str, source: AudioSource, call: CallInfo | None = None
                  ) -> None: ...

    def forget_input(self, name: str) -> None: ...


class TelephonyServer:
    """``--listen`` addresses (ws and tcp) served from one event loop thread."""

    def __init__(self, targets: tuple[OutputTarget, ...], host: StreamHost,
                 settings: TelephonyConfig | None = None) -> None:
        if not targets or any(t.kind not in ("ws", "tcp") for t in targets):
            raise ConfigError(f"telephony: {', '.join(map(str, targets))}: need ws:// or tcp://")
        self.targets = targets
        self.settings = settings or TelephonyConfig()
        self.name = "telephony"
        self._host = host
        self._socks: list[tuple[OutputTarget, socket.socket]] = []
        self.addresses: list[str] = []  # once bound: where clients connect
        self._loop = ServerLoop("telephony")
        self._lock = threading.Lock()
        self._held = 0  # admitted streams not yet forgotten (the admission count)
        self._streams: dict[str, Track] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # loop thread only
        self._closed = False
        self.closing = False
        self.counts = {"connections": 0, "refused": 0, "protocol_errors": 0,
                       "streams_opened": 0, "streams_freed": 0}
        # Of every stream so far, freed ones included (the figures of a load test):
        self.totals = {"late_chunks": 0, "gap_s": 0.0, "dropped_blocks": 0, "waited_s_max": 0.0}

    @classmethod
    def from_config(cls, cfg: Config, host: StreamHost) -> TelephonyServer:
        try:
            targets = parse_listens(cfg.telephony.listen)
        except ValueError as exc:
            raise ConfigError(f"telephony.listen: {exc}") from None
        return cls(targets, host, cfg.telephony)

    # --- lifecycle (the supervisor's thread) ----------------------------------------

    def _bound(self) -> list[str]:
        """Where clients connect (the bound ports for port 0)."""
        out = []
        for target, sock in self._socks:
            host, port = sock.getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            out.append(f"{target.kind}://{host}:{port}{target.path or ''}")
        return out

    def start(self) -> None:
        """Bind every address; raises ConfigError (one line) when one cannot be had."""
        try:
            for target in self.targets:
                assert target.host is not None and target.port is not None
                self._socks.append((target, listen_tcp(target.host, target.port,
                                                       f"listen {target}")))
        except BaseException:
            for _, sock in self._socks:
                sock.close()
            raise
        self.addresses = self._bound()
        for address in self.addresses:
            log.info("telephony: listening on %s (max_streams %d)", address,
                     self.settings.max_streams)

    def serve(self) -> None:
        """Start answering clients (the engine must be running); returns once it does."""
        assert self._socks, "start() first"
        self._loop.start(self._main, "telephony")

    def close(self) -> None:
        """End every connection (their streams end and are freed), then the loop."""
        if self._closed:
            return
        self._closed = self.closing = True
        self._loop.stop()
        for _, sock in self._socks:
            sock.close()
        log.info("telephony: summary %s", json.dumps(
            {k: v for k, v in self.stats().items() if k not in ("server", "addresses")}))

    async def _main(self) -> None:
        servers: list[Any] = []
        for target, sock in self._socks:
            if target.kind == "ws":
                servers.append(await serve_ws(self, sock, target.path or "/"))
            else:
                servers.append(await asyncio.start_server(
                    lambda r, w: self.run_connection(handle_tcp(self, r, w)), sock=sock,
                    limit=MAX_HEADER_BYTES))
        self._loop.serving()
        assert self._loop.stopping is not None
        await self._loop.stopping.wait()
        for server in servers:  # no new connections; the open ones close with a reason
            server.close(**({"close_connections": False} if isinstance(server, WsServer)
                            else {}))
        for task in list(self._tasks):
            task.cancel()  # each connection's finally ends its tracks
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_S / 2)
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), CLOSE_S / 4)

    async def run_connection(self, coro: Any) -> None:
        """Run one connection's coroutine as a task the shutdown can cancel."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.counts["connections"] += 1
        try:
            await coro
        finally:
            self._tasks.discard(task)

    # --- admission and streams (the loop's thread) ----------------------------------

    def busy_reason(self, wanted: int = 1) -> str | None:
        """Why ``wanted`` more streams cannot be taken now, or None (and they are held)."""
        if not self.closing:
            with self._lock:
                if self._held + wanted <= self.settings.max_streams:
                    self._held += wanted
                    return None
        return self._refuse()

    def full_reason(self) -> str | None:
        """Why a new connection is turned away before it asks for streams, or None."""
        return self._refuse() if self.full() else None

    def _refuse(self) -> str:
        self.counts["refused"] += 1
        if self.closing:
            return "intentd is stopping"
        return (f"too many streams ({self.settings.max_streams}, telephony.max_streams); "
                "try again later")

    def full(self) -> bool:
        with self._lock:
            return self.closing or self._held >= self.settings.max_streams

    def release(self, n: int = 1) -> None:
        """Give back slots held by :meth:`busy_reason` that did not become streams."""
        with self._lock:
            self._held -= n

    def new_track(self, name: str, rate_hz: int, channels: int = 1) -> Track:
        s = self.settings
        return Track(name, rate_hz, channels, s.block_ms, s.max_gap_s)

    def open_track(self, track: Track, call: CallInfo | None) -> None:
        """Hand ``track``'s stream to the engine (its slot is held); IntentdError, the slot
        given back, when it cannot be (a stream of that name is still running)."""
        with self._lock:
            if track.name in self._streams:
                self._held -= 1
                raise IntentdError(f"stream {track.name} is already open")
            self._streams[track.name] = track
        try:
            self._host.add_input(track.name, track.source, call)
        except BaseException:
            with self._lock:
                self._streams.pop(track.name, None)
                self._held -= 1
            raise
        self.counts["streams_opened"] += 1

    # --- from the engine (the model worker's thread) --------------------------------

    def stream_ended(self, item: StreamEnded) -> None:
        """Engine listener: every event of ``item.stream`` has been emitted: free it."""
        with self._lock:
            track = self._streams.pop(item.stream, None)
            if track is None:
                return
            self._held -= 1
        self._host.forget_input(item.stream)
        self.counts["streams_freed"] += 1
        t = self.totals
        t["late_chunks"] += track.counts["late_chunks"]
        t["gap_s"] += track.counts["gap_samples"] / track.rate_hz
        t["dropped_blocks"] += track.source.dropped_blocks
        t["waited_s_max"] = max(t["waited_s_max"], track.waited_s)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            tracks = list(self._streams.values())
            held = self._held
        t = self.totals
        return {"server": self.name, "addresses": self.addresses, **self.counts,
                "streams_open": len(tracks), "streams_held": held,
                "max_streams": self.settings.max_streams,
                "late_chunks": t["late_chunks"] + sum(x.counts["late_chunks"] for x in tracks),
                "gap_s": round(t["gap_s"] + sum(x.counts["gap_samples"] / x.rate_hz
                                                for x in tracks), 3),
                "dropped_blocks": t["dropped_blocks"] + sum(x.source.dropped_blocks
                                                            for x in tracks),
                "waited_s_max": round(max([t["waited_s_max"], *(x.waited_s for x in tracks)]),
                                      3)}
