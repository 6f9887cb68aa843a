"""One WebSocket media stream (a forked phone call): ``start`` opens a stream per track,
``media`` feeds them, ``stop`` (or the connection's end) ends them.

Everything here runs in the telephony server's loop. A connection that breaks the format
(not JSON, an unknown event, media before ``start``, an encoding other than mu-law, no
``start`` within ``telephony.start_timeout_s``) gets one log line and a close with the
reason (code 1008; 1013 when intentd is full, 1000 after ``stop``, 1001 on shutdown); its
streams end as at a hang-up, and no other call notices.

A caller who vanishes (the connection drops without ``stop``) ends the same way: the
utterance in progress is finished with what was heard and gets its verdict, the streams
are freed once their last event is out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from intentd.daemon.telephony.messages import (
    Media,
    ProtocolError,
    Start,
    Stop,
    decode_mulaw,
    parse_message,
)
from intentd.daemon.telephony.track import Track

if TYPE_CHECKING:
    from intentd.daemon.telephony.server import TelephonyServer

log = logging.getLogger(__name__)

BUSY = 1013  # "try again later"
POLICY = 1008
GOING_AWAY = 1001
# A 20 ms chunk is ~0.2 KB of JSON; a second of audio in one message ~11 KB. Far above both,
# far below what a garbage sender could make us hold.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_REASON_BYTES = 123  # RFC 6455: what a close frame's reason can hold


class _OneLine(logging.Filter):
    """websockets logs a failed handshake (a port scan, a load balancer's TCP check, a
    plain HTTP client) as an error with a traceback, and every connection at INFO: with
    hundreds of calls that is noise. Handshake failures become one line, and all of its
    lines up to INFO are DEBUG (the calls' own lines say what happened)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {exc.__class__.__name__}: {exc}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno = logging.INFO
        if record.levelno <= logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(record.levelno)


_ws_log = logging.getLogger(f"{__name__}.websockets")


async def serve_ws(server: TelephonyServer, sock: socket.socket, path: str) -> Server:
    if not any(isinstance(f, _OneLine) for f in _ws_log.filters):
        _ws_log.addFilter(_OneLine())

    def health(connection: ServerConnection, request: Request) -> Response | None:
        where = request.path.split("?", 1)[0]
        if where == "/health":
            full = server.full()
            body = {k: v for k, v in server.stats().items() if k != "addresses"}
            return connection.respond(503 if full else 200, json.dumps(body) + "\n")
        if where != path:
            return connection.respond(404, f"media streams connect to {path}\n")
        return None

    async def handler(connection: ServerConnection) -> None:
        await server.run_connection(CallSession(server, connection).run())

    # No compression: base64 audio hardly compresses and deflate costs CPU per message.
    return await serve(handler, sock=sock, process_request=health, compression=None,
                       max_size=MAX_MESSAGE_BYTES, logger=_ws_log)


def _reason(text: str) -> str:
    data = text.encode()[:MAX_REASON_BYTES]
    return data.decode(errors="ignore")


class CallSession:
    def __init__(self, server: TelephonyServer, connection: ServerConnection) -> None:
        self.server = server
        self.conn = connection
        peer = connection.remote_address
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.start: Start | None = None
        self.tracks: dict[str, Track] = {}
        self.stopped = False

    @property
    def who(self) -> str:
        if self.start is None:
            return f"ws {self.peer}"
        return f"call {self.start.call.call_sid or self.start.call.stream_sid} ({self.peer})"

    async def run(self) -> None:
        reason = self.server.full_reason()
        if reason is not None:
            log.warning("telephony %s refused: %s", self.who, reason)
            await self.conn.close(BUSY, _reason(reason))
            return
        try:
            await self._receive()
        except ProtocolError as exc:
            self.server.counts["protocol_errors"] += 1
            log.warning("telephony %s: %s; closing", self.who, exc)
            await self.conn.close(POLICY, _reason(str(exc)))
        except _Busy as exc:
            log.warning("telephony %s refused: %s", self.who, exc)
            await self.conn.close(BUSY, _reason(str(exc)))
        except ConnectionClosed:
            if self.tracks and not self.stopped and not self.server.closing:
                log.info("telephony %s: the connection closed without stop; its streams "
                         "end", self.who)
        except asyncio.CancelledError:
            for track in self.tracks.values():
                track.abandon()
            if not self.server.closing:
                raise
        finally:
            for track in self.tracks.values():
                if self.server.closing:
                    track.abandon()  # no waiting for room at shutdown
                else:
                    await track.end()
        if self.server.closing:
            await self.conn.close(GOING_AWAY, "intentd is stopping")

    async def _receive(self) -> None:
        s = self.server.settings
        loop = asyncio.get_running_loop()
        timeout = s.start_timeout_s
        try:
            # One deadline moved per message, not a wait_for (a task per message: 50 per
            # second per track is measurable with hundreds of calls).
            async with asyncio.timeout(None) as deadline:
                while True:
                    timeout = s.start_timeout_s if self.start is None else s.idle_timeout_s
                    deadline.reschedule(loop.time() + timeout)
                    raw = await self.conn.recv()
                    deadline.reschedule(None)  # backpressure below is not idleness
                    if await self._handle(raw):
                        return
        except TimeoutError:
            what = "no start" if self.start is None else "no message"
            raise ProtocolError(f"{what} within {timeout:g} s") from None

    async def _handle(self, raw: str | bytes) -> bool:
        """One message; True after ``stop``."""
        msg = parse_message(raw)
        if isinstance(msg, Media):
            track = self.tracks.get(msg.track)
            if track is None:
                raise ProtocolError("media before start" if self.start is None else
                                    f"media for track {msg.track}, not in start.tracks")
            if msg.payload:
                await track.add(decode_mulaw(msg.payload), msg.timestamp_ms)
        elif isinstance(msg, Start):
            await self._open(msg)
        elif isinstance(msg, Stop):
            self.stopped = True
            for track in self.tracks.values():
                await track.end()
            await self.conn.close(1000, "stop")
            return True
        return False

    async def _open(self, start: Start) -> None:
        if self.start is not None:
            raise ProtocolError("a second start on one connection")
        self.start = start
        reason = self.server.busy_reason(len(start.tracks))
        if reason is not None:
            raise _Busy(reason)
        for k, track_name in enumerate(start.tracks):
            track = self.server.new_track(start.stream_name(track_name), start.rate_hz)
            try:
                self.server.open_track(track, start.call)
            except Exception as exc:
                self.server.release(len(start.tracks) - k - 1)
                raise ProtocolError(str(exc)) from None
            self.tracks[track_name] = track
        log.debug("telephony %s: streams %s", self.who,
                 ", ".join(t.name for t in self.tracks.values()))


class _Busy(Exception):
    pass
