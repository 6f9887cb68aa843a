"""The TCP ingest, for anything that is not a media-stream WebSocket: one JSON header line
(:func:`~intentd.daemon.telephony.messages.parse_header`), then raw audio until the
connection ends, which ends the stream (its utterance in progress gets its verdict).

A refusal (bad header, full, a stream of that name still open) is one line
``{"error": REASON, "code": "bad-header" | "busy" | "timeout"}`` and the close; an accepted
stream gets no reply, so ``… | nc HOST PORT`` works. A connection that closes before
sending anything (a load balancer's health check) is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from intentd.daemon.audio.push import pcm_to_float
from intentd.daemon.errors import IntentdError
from intentd.daemon.telephony.messages import Header, ProtocolError, decode_mulaw, parse_header
from intentd.daemon.telephony.track import Track

if TYPE_CHECKING:
    from intentd.daemon.telephony.server import TelephonyServer

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 4096
READ_BYTES = 16384


def _decode(data: bytes, header: Header) -> np.ndarray:
    if header.format == "mulaw":
        return decode_mulaw(data).reshape(-1, header.channels)
    return pcm_to_float(data, 2, header.channels)


async def _refuse(writer: asyncio.StreamWriter, reason: str, code: str) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.write(json.dumps({"error": reason, "code": code}).encode() + b"\n")
        await asyncio.wait_for(writer.drain(), 2.0)


async def _header(server: TelephonyServer, reader: asyncio.StreamReader, who: str
                  ) -> Header | None:
    """The header, or None when the client left without one (nothing to say)."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                      server.settings.start_timeout_s)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            log.debug("telephony tcp %s: closed without a header", who)
            return None
        raise ProtocolError("the header line has no newline") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"the header line is longer than {MAX_HEADER_BYTES} bytes") from None
    except TimeoutError:
        raise ProtocolError(f"no header within {server.settings.start_timeout_s:g} s") from None
    return parse_header(line)


async def handle_tcp(server: TelephonyServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
    try:
        await _serve(server, reader, writer, who)
    except (ConnectionError, OSError):
        log.debug("telephony tcp %s: connection lost", who)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _serve(server: TelephonyServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, who: str) -> None:
    reason = server.full_reason()
    if reason is not None:
        log.warning("telephony tcp %s refused: %s", who, reason)
        await _refuse(writer, reason, "busy")
        return
    try:
        header = await _header(server, reader, who)
    except ProtocolError as exc:
        server.counts["protocol_errors"] += 1
        code = "timeout" if "within" in str(exc) else "bad-header"
        log.warning("telephony tcp %s: %s; closing", who, exc)
        await _refuse(writer, str(exc), code)
        return
    if header is None:
        return
    reason = server.busy_reason(1)
    if reason is not None:
        log.warning("telephony tcp %s (stream %s) refused: %s", who, header.stream, reason)
        await _refuse(writer, reason, "busy")
        return
    track = server.new_track(header.stream, header.rate_hz, header.channels)
    try:
        server.open_track(track, header.call)
    except IntentdError as exc:
        log.warning("telephony tcp %s: %s; closing", who, exc)
        await _refuse(writer, str(exc), "busy")
        return
    try:
        await _audio(server, reader, header, track, who)
    finally:
        if server.closing:
            track.abandon()
        else:
            await track.end()


async def _audio(server: TelephonyServer, reader: asyncio.StreamReader, header: Header,
                 track: Track, who: str) -> None:
    frame = (1 if header.format == "mulaw" else 2) * header.channels
    rest = b""
    idle = server.settings.idle_timeout_s
    while True:
        try:
            data = await asyncio.wait_for(reader.read(READ_BYTES), idle)
        except TimeoutError:
            log.warning("telephony tcp %s (stream %s): no audio for %g s; the stream ends",
                        who, header.stream, idle)
            return
        if not data:
            log.debug("telephony tcp %s (stream %s): end of audio", who, header.stream)
            return
        data = rest + data
        usable = len(data) - len(data) % frame
        rest = data[usable:]
        if usable:
            await track.add(_decode(data[:usable], header))
