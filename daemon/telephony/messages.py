"""The two wire formats the telephony ingest reads, parsed into typed messages.

WebSocket media streams (Twilio's format; Telnyx and SignalWire send the same shape, and
Telnyx's snake_case field names are read too)::

    {"event": "connected", ...}
    {"event": "start", "start": {"streamSid", "callSid", "tracks": ["inbound", "outbound"],
                                 "customParameters": {...}, "mediaFormat": {"encoding":
                                 "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "media": {"track": "inbound", "chunk": "2", "timestamp": "20",
                                 "payload": "<base64 mu-law>"}}
    {"event": "dtmf" | "mark", ...}
    {"event": "stop", ...}

TCP: one JSON header line ``{"stream": NAME, "rate_hz": 8000, "format": "mulaw"|"s16le",
"channels": 1[, "call": {"callSid", "streamSid", "customParameters"}]}``, then raw audio.

Anything that does not parse is a :class:`ProtocolError` whose text is the reason the
connection is closed with (short: a WebSocket close reason holds 123 bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentd.daemon.audio.inputs import check_name
from intentd.daemon.audio.sources import MULAW_TO_INT16
from intentd.daemon.output.events import CallInfo

MULAW_ENCODINGS = ("audio/x-mulaw", "pcmu", "mulaw", "audio/pcmu")
TCP_FORMATS = ("mulaw", "s16le")
# Twilio's tracks; Telnyx says "inbound"/"outbound" too. A name becomes part of a stream.
TRACKS = ("inbound", "outbound")
RATES_HZ = (8000, 16000)  # mu-law is 8 kHz on every platform; 16 kHz for wideband trunks
MAX_PARAMETERS = 64
MAX_TEXT = 256  # a sid, a parameter name or value: longer is not an id, it is garbage
HEADER_KEYS = ("stream", "rate_hz", "format", "channels", "call")
# mu-law byte -> float sample in [-1, 1): one table lookup per sample
MULAW_TO_FLOAT = (MULAW_TO_INT16.astype(np.float32) / 32768.0)


class ProtocolError(ValueError):
    """A message that cannot be taken; ``str()`` is the close reason."""


@dataclass(frozen=True)
class Start:
    call: CallInfo
    tracks: tuple[str, ...]
    rate_hz: int

    def stream_name(self, track: str) -> str:
        return f"{self.call.call_sid or self.call.stream_sid}/{track}"


@dataclass(frozen=True)
class Media:
    track: str
    timestamp_ms: int | None  # since the stream started; None: not given (arrival order)
    payload: bytes  # mu-law bytes


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Notice:
    """``connected``, ``dtmf``, ``mark``: valid, nothing to hear."""

    event: str


Message = Start | Media | Stop | Notice


@dataclass(frozen=True)
class Header:
    stream: str
    rate_hz: int
    format: str
    channels: int
    call: CallInfo | None = None


def decode_mulaw(payload: bytes) -> np.ndarray:
    """mu-law bytes -> float32 ``[n, 1]``."""
    return MULAW_TO_FLOAT[np.frombuffer(payload, dtype=np.uint8)].reshape(-1, 1)


def encode_mulaw(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> G.711 mu-law bytes (the inverse of the decode table)."""
    x = np.clip(np.asarray(samples, dtype=np.float64) * 32768.0, -32635, 32635).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.abs(x) + 0x84
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def _get(d: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def _text(value: Any, what: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ProtocolError(f"{what} must be a non-empty string")
    return value


def _int(value: Any, what: str) -> int:
    """Twilio sends numbers as strings ("20")."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError(f"{what} must be a whole number >= 0")


def parse_call(d: Any, where: str) -> CallInfo:
    """``start`` (or a TCP header's ``call``) -> :class:`CallInfo`."""
    if not isinstance(d, dict):
        raise ProtocolError(f"{where} must be an object")
    stream_sid = _text(_get(d, "streamSid", "stream_id", "streamId"), f"{where}.streamSid")
    call_sid = _text(_get(d, "callSid", "call_control_id", "call_sid"), f"{where}.callSid",
                     required=False)
    params = _get(d, "customParameters", "custom_parameters") or {}
    if not isinstance(params, dict) or len(params) > MAX_PARAMETERS:
        raise ProtocolError(f"{where}.customParameters must be an object of at most "
                            f"{MAX_PARAMETERS} names")
    pairs = tuple((str(_text(k, "a parameter name")), str(_text(v, f"parameter {k}")))
                  for k, v in params.items())
    assert stream_sid is not None
    for sid in (call_sid, stream_sid):
        if sid is not None:
            try:
                check_name(sid)
            except ValueError:
                raise ProtocolError(f"{where}: sid {sid[:40]!r} has characters a stream name "
                                    "cannot hold (letters, digits, _ . : / -)") from None
    return CallInfo(call_sid, stream_sid, pairs)


def _start(msg: dict[str, Any]) -> Start:
    body = msg.get("start")
    if not isinstance(body, dict):
        raise ProtocolError("start: the 'start' object is missing")
    if _get(body, "streamSid", "stream_id") is None and _get(msg, "streamSid", "stream_id"):
        body = {**body, "streamSid": _get(msg, "streamSid", "stream_id")}
    call = parse_call(body, "start")
    fmt = _get(body, "mediaFormat", "media_format")
    if not isinstance(fmt, dict):
        raise ProtocolError("start.mediaFormat is missing")
    encoding = str(fmt.get("encoding", "")).lower()
    rate = _get(fmt, "sampleRate", "sample_rate")
    channels = fmt.get("channels", 1)
    if encoding not in MULAW_ENCODINGS:
        raise ProtocolError(f"encoding {encoding[:30]!r} is not supported; send audio/x-mulaw")
    if rate not in RATES_HZ or channels != 1:
        raise ProtocolError(f"mediaFormat {rate!r} Hz, {channels!r} ch is not supported; send "
                            "8000 Hz mono")
    tracks = body.get("tracks", ["inbound"])
    if (not isinstance(tracks, list) or not tracks or len(set(tracks)) != len(tracks)
            or any(t not in TRACKS for t in tracks)):
        raise ProtocolError(f"start.tracks must list {' and/or '.join(TRACKS)}")
    return Start(call, tuple(tracks), int(rate))


def _media(msg: dict[str, Any]) -> Media:
    body = msg.get("media")
    if not isinstance(body, dict):
        raise ProtocolError("media: the 'media' object is missing")
    track = body.get("track", "inbound")
    if track not in TRACKS:
        raise ProtocolError(f"media.track {str(track)[:20]!r} is not {' or '.join(TRACKS)}")
    stamp = body.get("timestamp")
    payload = body.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError("media.payload must be base64 text")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media.payload is not valid base64") from None
    return Media(track, None if stamp is None else _int(stamp, "media.timestamp"), audio)


def parse_message(text: str | bytes) -> Message:
    """One WebSocket message -> a typed message; ProtocolError says why not."""
    if isinstance(text, bytes):
        raise ProtocolError("binary message; media streams send JSON text")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("a message is not JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message is not a JSON object")
    event = msg.get("event")
    if event == "media":
        return _media(msg)
    if event == "start":
        return _start(msg)
    if event == "stop":
        return Stop()
    if event in ("connected", "dtmf", "mark"):
        return Notice(event)
    raise ProtocolError(f"unknown event {str(event)[:30]!r}")


def parse_header(line: bytes) -> Header:
    """The TCP ingest's first line -> :class:`Header`; ProtocolError says why not."""
    try:
        d = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError("the first line must be a JSON header: {\"stream\": NAME, "
                            "\"rate_hz\": 8000, \"format\": \"mulaw\", \"channels\": 1}") from None
    if not isinstance(d, dict):
        raise ProtocolError("the header must be a JSON object")
    unknown = sorted(set(d) - set(HEADER_KEYS))
    if unknown:
        raise ProtocolError(f"unknown header key {unknown[0][:30]!r}; known: "
                            f"{', '.join(HEADER_KEYS)}")
    name = _text(d.get("stream"), "header stream")
    assert name is not None
    try:
        check_name(name)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    rate, fmt, channels = d.get("rate_hz"), d.get("format", "s16le"), d.get("channels", 1)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 384000:
        raise ProtocolError("header rate_hz must be an integer 1000..384000, e.g. 8000")
    if fmt not in TCP_FORMATS:
        raise ProtocolError(f"header format {str(fmt)[:20]!r} is not one of "
                            f"{', '.join(TCP_FORMATS)}")
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 8:
        raise ProtocolError("header channels must be an integer 1..8")
    call = parse_call(d["call"], "header call") if "call" in d else None
    return Header(name, rate, fmt, channels, call)
