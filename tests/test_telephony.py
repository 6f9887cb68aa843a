"""The telephony ingest without a model: addresses, the media-stream messages, the TCP
header, mu-law, stream time from media timestamps, admission, and bad clients (a fake
supervisor takes the streams; the daemon end to end is test_telephony_e2e)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from intentd.daemon.audio.push import PushSource
from intentd.daemon.audio.sources import MULAW_TO_INT16
from intentd.daemon.config import load_config
from intentd.daemon.engine.items import StreamEnded
from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import CallInfo
from intentd.daemon.output.targets import OutputTarget, parse_target, parse_targets
from intentd.daemon.telephony.messages import (
    Media,
    Notice,
    ProtocolError,
    Start,
    Stop,
    decode_mulaw,
    encode_mulaw,
    parse_header,
    parse_message,
)
from intentd.daemon.telephony.server import TelephonyServer
from intentd.daemon.telephony.settings import TelephonyConfig, parse_listen
from intentd.daemon.telephony.track import Track

START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
         "start": {"streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1",
                   "tracks": ["inbound", "outbound"], "customParameters": {"crm": "42"},
                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                   "channels": 1}}}


def _media(track: str, stamp: int, payload: bytes) -> str:
    return json.dumps({"event": "media", "media": {
        "track": track, "chunk": "1", "timestamp": str(stamp),
        "payload": base64.b64encode(payload).decode()}, "streamSid": "MZ1"})


def _start(**changes: Any) -> str:
    body = {**START["start"], **changes}  # type: ignore[dict-item]
    return json.dumps({**START, "start": body})


# --- addresses ----------------------------------------------------------------------


def test_listen_addresses_go_through_the_one_target_parser() -> None:
    assert parse_listen("ws://0.0.0.0:8765/media") == OutputTarget(
        "ws", host="0.0.0.0", port=8765, path="/media")
    assert str(parse_listen("ws://[::1]:0")) == "ws://[::1]:0/"
    assert parse_listen("tcp://127.0.0.1:7800") == parse_target("tcp://127.0.0.1:7800")
    for bad in ("ws://host", "wss://h:1/x", "ws://h:1/x?y=1", "unix:/tmp/x", "stdout"):
        with pytest.raises(ValueError, match="ws://HOST:PORT"):
            parse_listen(bad)
    with pytest.raises(ValueError, match="an address to listen on"):
        parse_targets(["ws://127.0.0.1:1/media"])  # not an output


def test_config_and_command_line(tmp_path: Any) -> None:
    cfg = load_config(None, {"telephony.listen": ["ws://127.0.0.1:0/media"], "inputs": []})
    assert cfg.telephony.listen == ("ws://127.0.0.1:0/media",) and cfg.inputs == ()
    path = tmp_path / "config.yaml"
    path.write_text("telephony:\n  listen: [ws://127.0.0.1:0/x, 'tcp:nope']\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: telephony.listen = .* is invalid; "
                                          r"allowed: a list of ws://"):
        load_config(path)
    from intentd.daemon.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["--listen", "ws://127.0.0.1:0/m", "--listen",
                                      "tcp://127.0.0.1:0"])
    over = overrides_from_args(args)
    assert over["telephony.listen"] == ["ws://127.0.0.1:0/m", "tcp://127.0.0.1:0"]
    assert over["inputs"] == []  # no microphone opened behind the user's back


# --- messages -----------------------------------------------------------------------


def test_media_stream_messages() -> None:
    start = parse_message(json.dumps(START))
    assert isinstance(start, Start)
    assert start.call == CallInfo("CA1", "MZ1", (("crm", "42"),))
    assert start.tracks == ("inbound", "outbound") and start.rate_hz == 8000
    assert start.stream_name("outbound") == "CA1/outbound"
    media = parse_message(_media("outbound", 40, b"\xff\x7f"))
    assert media == Media("outbound", 40, b"\xff\x7f")
    assert parse_message('{"event": "stop", "stop": {}}') == Stop()
    assert parse_message('{"event": "connected", "protocol": "Call"}') == Notice("connected")
    assert parse_message('{"event": "dtmf", "dtmf": {"digit": "1"}}') == Notice("dtmf")
    no_call = parse_message(_start(callSid=None, tracks=None) .replace(', "tracks": null', ""))
    assert isinstance(no_call, Start) and no_call.stream_name("inbound") == "MZ1/inbound"


@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"event": "hangup"}', "unknown event 'hangup'"),
    ('{"event": "media", "media": {"track": "inbound", "payload": "@@@"}}', "not valid base64"),
    ('{"event": "media", "media": {"track": "sideways", "payload": ""}}', "media.track"),
    ('{"event": "media", "media": {"timestamp": "-5", "payload": ""}}', "whole number"),
    ('{"event": "media"}', "'media' object is missing"),
    (_start(mediaFormat={"encoding": "audio/l16", "sampleRate": 8000}), "encoding"),
    (_start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 44100}), "8000 Hz mono"),
    (_start(tracks=["inbound", "inbound"]), "start.tracks"),
    (_start(callSid="CA 1; rm"), "characters a stream name cannot hold"),
    (_start(customParameters={"a": {"nested": 1}}), "parameter a"),
    (_start(streamSid=None).replace('"streamSid": "MZ1", "start"', '"start"'), "streamSid"),
])
def test_bad_messages_say_why(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_message(text)
    with pytest.raises(ProtocolError, match="binary"):
        parse_message(b"\x00\x01")


def test_tcp_header() -> None:
    h = parse_header(b'{"stream": "line-7", "rate_hz": 8000, "format": "mulaw"}\n')
    assert (h.stream, h.rate_hz, h.format, h.channels, h.call) == ("line-7", 8000, "mulaw", 1,
                                                                   None)
    h = parse_header(json.dumps({"stream": "a", "rate_hz": 16000, "channels": 2, "call": {
        "callSid": "CA9", "streamSid": "S9", "customParameters": {"agent": "7"}}}).encode())
    assert h.format == "s16le" and h.call == CallInfo("CA9", "S9", (("agent", "7"),))
    for bad, reason in ((b"hello\n", "JSON header"), (b'{"rate_hz": 8000}', "stream"),
                        (b'{"stream": "a", "rate_hz": 8000, "fmt": "mulaw"}', "unknown header"),
                        (b'{"stream": "a", "rate_hz": "8k"}', "rate_hz"),
                        (b'{"stream": "a b", "rate_hz": 8000}', "stream name"),
                        (b'{"stream": "a", "rate_hz": 8000, "format": "alaw"}', "format")):
        with pytest.raises(ProtocolError, match=reason):
            parse_header(bad)


def test_mulaw_round_trip() -> None:
    every = bytes(range(256))
    np.testing.assert_array_equal(decode_mulaw(every)[:, 0] * 32768,
                                  MULAW_TO_INT16.astype(np.float32))
    x = np.sin(np.linspace(0, 60, 8000)).astype(np.float32) * 0.8
    y = decode_mulaw(encode_mulaw(x))[:, 0]
    assert np.max(np.abs(x - y)) < 0.03  # mu-law's step near full scale
    assert encode_mulaw(np.zeros(3)) == b"\xff\xff\xff"
    # Every code word survives decode -> encode (0x7f and 0xff are both zero).
    back = encode_mulaw(decode_mulaw(every)[:, 0])
    assert sum(a != b for a, b in zip(back, every, strict=True)) <= 1


# --- stream time --------------------------------------------------------------------


def _drain(source: PushSource) -> np.ndarray:
    """Every sample of an ended source (a source that does not end fails the test)."""
    out = [np.zeros((0, 1), np.float32)]
    deadline = time.monotonic() + 5
    while (block := source.read(0.01)) is not None:
        assert time.monotonic() < deadline, "the source did not end"
        out.append(block)
    return np.concatenate(out)[:, 0]


def test_timestamps_drive_stream_time() -> None:
    track = Track("CA1/inbound", 8000, block_ms=100, max_gap_s=1.0)
    ones = np.ones((160, 1), np.float32)  # 20 ms

    async def feed() -> None:
        await track.add(ones, 0)
        await track.add(ones * 2, 20)
        await track.add(ones * 2, 20)  # a duplicate: dropped
        await track.add(ones * 3, 100)  # 60 ms nothing sent: silence
        await track.add(ones * 4, 105)  # 15 ms already heard: the new 5 ms kept
        await track.add(ones * 5, 130)  # 5 ms off: taken as it is (ms rounding)
        await track.add(ones * 6, None)  # no timestamp: arrival order
        await track.add(ones * 7, 5000)  # 4.7 s jump: 1 s of silence (max_gap_s), logged
        await track.end()

    asyncio.run(feed())
    got = _drain(track.source)
    want = np.concatenate([np.full(160, 1.0), np.full(160, 2.0), np.zeros(480), np.full(160, 3),
                           np.full(40, 4), np.full(160, 5), np.full(160, 6), np.zeros(8000),
                           np.full(160, 7)])
    np.testing.assert_array_equal(got, want)
    assert track.counts["late_chunks"] == 1 and track.counts["gaps_cut"] == 1
    assert track.samples == want.size


def test_chunks_are_gathered_into_blocks() -> None:
    track = Track("t", 8000, block_ms=100)

    async def feed() -> None:
        for k in range(12):  # 240 ms of 20 ms chunks
            await track.add(np.full((160, 1), k, np.float32), 20 * k)
        await track.end()

    asyncio.run(feed())
    sizes = []
    while (block := track.source.read(0.01)) is not None:
        sizes.append(block.shape[0])
    assert sizes == [800, 800, 320]  # two 100 ms blocks, the rest at the end


# --- the server, with a fake supervisor ---------------------------------------------


class FakeHost:
    def __init__(self) -> None:
        self.streams: dict[str, tuple[PushSource, CallInfo | None]] = {}
        self.forgotten: list[str] = []

    def add_input(self, name: str, source: Any, call: CallInfo | None = None) -> None:
        if name in self.streams:
            raise ConfigError(f"a stream named {name!r} is already running")
        self.streams[name] = (source, call)

    def forget_input(self, name: str) -> None:
        self.forgotten.append(name)
        self.streams.pop(name, None)


@pytest.fixture
def server() -> Any:
    host = FakeHost()
    srv = TelephonyServer((parse_listen("ws://127.0.0.1:0/media"),
                           parse_listen("tcp://127.0.0.1:0")), host,
                          TelephonyConfig(max_streams=3, start_timeout_s=1.0))
    srv.start()
    srv.serve()
    yield srv, host
    srv.close()


def _ws(srv: TelephonyServer) -> str:
    return srv.addresses[0]


def _tcp(srv: TelephonyServer) -> tuple[str, int]:
    host, port = srv.addresses[1].removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


async def _call(url: str, *messages: str) -> tuple[int | None, str]:
    """Send ``messages``; the close code and reason the server answered with."""
    async with connect(url) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.wait_closed(), 5)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""


def _wait(cond: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_call_becomes_a_stream_per_track_with_its_ids(server: Any) -> None:
    srv, host = server
    pcm = encode_mulaw(np.full(160, 0.5))
    code, reason = asyncio.run(_call(_ws(srv), _start(), _media("inbound", 0, pcm),
                                     _media("outbound", 0, pcm), _media("inbound", 20, pcm),
                                     '{"event": "stop"}'))
    assert (code, reason) == (1000, "stop")
    assert set(host.streams) == {"CA1/inbound", "CA1/outbound"}
    source, call = host.streams["CA1/inbound"]
    assert call == CallInfo("CA1", "MZ1", (("crm", "42"),)) and source.sample_rate_hz == 8000
    assert _drain(source).size == 320 and _drain(host.streams["CA1/outbound"][0]).size == 160
    assert srv.stats()["streams_held"] == 2
    for name in list(host.streams):  # the engine emitted their last events
        srv.stream_ended(StreamEnded(name))
    assert srv.stats()["streams_held"] == 0 and sorted(host.forgotten) == [
        "CA1/inbound", "CA1/outbound"]


@pytest.mark.parametrize(("messages", "reason"), [
    (["garbage"], "a message is not JSON"),
    ([_media("inbound", 0, b"\xff")], "media before start"),
    ([_start(mediaFormat={"encoding": "audio/l16", "sampleRate": 8000})], "encoding"),
    ([_start(tracks=["inbound"]), _media("outbound", 0, b"\xff")], "not in start.tracks"),
    (['{"event": "connected"}'], "no start within 1 s"),
    ([_start(), _start()], "a second start"),
])
def test_bad_clients_are_closed_with_the_reason(server: Any, messages: list[str],
                                                reason: str) -> None:
    srv, host = server
    code, why = asyncio.run(_call(_ws(srv), *messages))
    assert code == 1008 and reason in why, why
    for source, _ in host.streams.values():  # what it had opened has ended
        _drain(source)
    for name in list(host.streams):
        srv.stream_ended(StreamEnded(name))
    assert srv.stats()["streams_held"] == 0


def test_admission_refuses_over_max_streams_with_a_reason(server: Any) -> None:
    srv, _ = server

    async def crowd() -> list[tuple[int | None, str]]:
        async with connect(_ws(srv)) as first:  # 2 tracks of 3
            await first.send(_start())
            await asyncio.sleep(0.2)
            second = await _call(_ws(srv), _start(callSid="CA2"))  # 2 more: refused
            third = await _call(_ws(srv), _start(callSid="CA3", tracks=["inbound"]),
                                '{"event": "stop"}')  # its slot is held until freed
            held = srv.stats()["streams_held"]
            fourth = await _call(_ws(srv), '{"event": "connected"}')  # full at connect
            await first.send('{"event": "stop"}')
            return [second, third, (held, ""), fourth]

    second, third, (held, _), fourth = asyncio.run(crowd())
    assert second[0] == 1013 and "too many streams (3, telephony.max_streams)" in second[1]
    assert third == (1000, "stop")
    assert held == 3 and fourth[0] == 1013
    # TCP: refused with a JSON line while full.
    with socket.create_connection(_tcp(srv), timeout=5) as s:
        line = s.makefile("rb").readline()
    assert json.loads(line) == {"error": "too many streams (3, telephony.max_streams); try "
                                         "again later", "code": "busy"}
    assert srv.stats()["refused"] == 3


def test_tcp_stream_header_then_audio(server: Any) -> None:
    srv, host = server
    with socket.create_connection(_tcp(srv), timeout=5) as s:
        s.sendall(b'{"stream": "line-7", "rate_hz": 8000, "format": "s16le"}\n')
        s.sendall((np.full(801, 16384, "<i2").tobytes()) + b"\x01")  # an odd byte left over
    _wait(lambda: "line-7" in host.streams)
    source, call = host.streams["line-7"]
    got = _drain(source)
    assert call is None and got.size == 801 and np.all(got == 0.5)
    with socket.create_connection(_tcp(srv), timeout=5) as s:
        s.sendall(b'{"stream": "x", "rate_hz": 8000, "format": "alaw"}\n')
        reply = json.loads(s.makefile("rb").readline())
    assert reply["code"] == "bad-header" and "alaw" in reply["error"]
    with socket.create_connection(_tcp(srv), timeout=5) as s:  # a health check: no reply
        pass
    with socket.create_connection(_tcp(srv), timeout=5) as s:  # the same name, still open
        s.sendall(b'{"stream": "line-7", "rate_hz": 8000}\n')
        reply = json.loads(s.makefile("rb").readline())
    assert "already open" in reply["error"]


def test_health_endpoint_and_other_paths(server: Any) -> None:
    import urllib.error
    import urllib.request

    srv, _ = server
    base = _ws(srv).replace("ws://", "http://").removesuffix("/media")
    body = json.loads(urllib.request.urlopen(base + "/health", timeout=5).read())
    assert body["max_streams"] == 3 and body["streams_held"] == 0
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(base + "/elsewhere", timeout=5)


def test_shutdown_ends_open_calls(server: Any) -> None:
    srv, host = server
    done = threading.Event()
    closed: list[tuple[int | None, str]] = []

    async def hold() -> None:
        async with connect(_ws(srv)) as ws:
            await ws.send(_start())
            await ws.send(_media("inbound", 0, b"\xff" * 160))
            done.set()
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed:
                closed.append((ws.close_code, ws.close_reason or ""))

    t = threading.Thread(target=asyncio.run, args=(hold(),))
    t.start()
    assert done.wait(5)
    _wait(lambda: len(host.streams) == 2)
    t0 = time.monotonic()
    srv.close()
    t.join(5)
    assert time.monotonic() - t0 < 1.5
    assert closed == [(1001, "intentd is stopping")]
    for source, _ in host.streams.values():
        assert _drain(source).size in (0, 160)  # ended: read returns None after the rest
