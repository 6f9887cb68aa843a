"""Sinks: lossless stdout, fan-out sockets where a stuck client hurts nobody else."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import SpeechStartEvent, to_json_line
from intentd.daemon.output.sinks import (
    StdoutSink,
    TcpSink,
    UnixSocketSink,
    make_sink,
    open_sinks,
    parse_mode,
)

N_EVENTS = 400
BATCH = 20
PAYLOAD = "x" * 4000  # large lines fill a stuck client's kernel buffers quickly


TS = 1714564800.0


def _event(i: int, stream: str = "s" + PAYLOAD) -> SpeechStartEvent:
    """An event whose JSON line is large by default (its stream name)."""
    return SpeechStartEvent(i, stream, 0.0, TS)


def _ids(lines: list[str]) -> list[int]:
    return [json.loads(x)["utterance_id"] for x in lines]


def _wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class _Reader(threading.Thread):
    """A well-behaved client: reads lines until EOF."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.lines: list[str] = []

    def run(self) -> None:
        buf = b""
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                break
            buf += data
            *done, buf = buf.split(b"\n")
            self.lines.extend(d.decode() for d in done)
        self.sock.close()


def _connect(sink: UnixSocketSink | TcpSink, rcvbuf: int | None = None) -> socket.socket:
    if isinstance(sink, UnixSocketSink):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr: object = sink.path
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = sink.address
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)  # type: ignore[arg-type]
    return s


def _connected(sink: UnixSocketSink | TcpSink) -> int:
    return sum(1 for c in sink.stats()["clients"] if c["connected"])


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_stuck_client_drops_oldest_and_never_blocks(transport: str, tmp_path: Path) -> None:
    if transport == "unix":
        sink: UnixSocketSink | TcpSink = UnixSocketSink(str(tmp_path / "e.sock"),
                                                        client_buffer_events=32)
    else:
        sink = TcpSink("127.0.0.1", 0, client_buffer_events=32)
    sink.start()
    good = _Reader(_connect(sink))
    good.start()
    stuck = _connect(sink, rcvbuf=4096)  # never calls recv
    _wait_for(lambda: _connected(sink) == 2)

    def produce() -> None:
        for start in range(0, N_EVENTS, BATCH):
            for i in range(start, start + BATCH):
                sink.emit(_event(i))
            # Pace only on the good client, as a live pipeline would be paced by speech.
            _wait_for(lambda n=start + BATCH: len(good.lines) >= n)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(timeout=60)
    assert not producer.is_alive(), "emit() blocked behind the stuck client"

    stats = sink.stats()
    by_client = sorted(stats["clients"], key=lambda c: c["dropped"])
    assert by_client[0]["dropped"] == 0
    assert by_client[1]["dropped"] > 0
    assert by_client[1]["dropped"] + by_client[1]["sent"] <= N_EVENTS

    sink.close()
    good.join(timeout=10)
    assert _ids(good.lines) == list(range(N_EVENTS))
    stuck.close()
    if transport == "unix":
        assert not Path(sink.path).exists()  # type: ignore[union-attr]


def test_vanished_client_is_removed_and_others_continue(tmp_path: Path) -> None:
    sink = UnixSocketSink(str(tmp_path / "v.sock"))
    sink.start()
    a = _Reader(_connect(sink))
    a.start()
    b = _connect(sink)
    _wait_for(lambda: _connected(sink) == 2)
    sink.emit(_event(0, "a"))
    b.close()
    # Its end of input may be a half-close: it goes when a write to it fails.
    sink.emit(_event(1, "a"))
    _wait_for(lambda: _connected(sink) == 1)
    sink.emit(_event(2, "a"))
    sink.close()
    a.join(timeout=5)
    assert a.lines == [to_json_line(_event(i, "a")) for i in range(3)]
    assert len(sink.stats()["clients"]) == 2


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_half_closed_client_still_receives(transport: str, tmp_path: Path) -> None:
    """`nc HOST PORT </dev/null` shuts its sending side at once and then reads."""
    sink = make_sink(f"unix:{tmp_path / 'h.sock'}" if transport == "unix" else "tcp:127.0.0.1:0")
    sink.start()
    sock = _connect(sink)  # type: ignore[arg-type]
    sock.shutdown(socket.SHUT_WR)
    reader = _Reader(sock)
    reader.start()
    _wait_for(lambda: _connected(sink) == 1)  # type: ignore[arg-type]
    time.sleep(0.2)  # the sink has seen the end of the client's input
    for i in range(3):
        sink.emit(_event(i, "h"))
    sink.close()
    reader.join(timeout=5)
    assert reader.lines == [to_json_line(_event(i, "h")) for i in range(3)]


def test_clients_coming_and_going_keep_logs_stats_and_descriptors_bounded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from intentd.daemon.output import socket_sinks as S

    caplog.set_level("INFO", logger=S.__name__)
    sink = UnixSocketSink(str(tmp_path / "c.sock"))
    sink.start()
    for i in range(300):
        _connect(sink).close()
        if i % 50 == 49:
            sink.emit(_event(i, "c"))
    _wait_for(lambda: sink.stats()["clients_accepted"] == 300)
    _wait_for(lambda: _connected(sink) <= S.HALF_CLOSED_KEEP)
    stats = sink.stats()
    assert len(stats["clients"]) <= S.GONE_KEEP + S.HALF_CLOSED_KEEP
    sink.close()
    infos = [r for r in caplog.records if r.levelname == "INFO" and r.msg.startswith("%s: client")]
    assert len(infos) <= S.CLIENT_LOGS_PER_MIN


def test_unix_socket_mode_and_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound but nobody listens: what a crashed daemon leaves behind
    sink = UnixSocketSink(str(path), mode=0o600)
    sink.start()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    with pytest.raises(ConfigError, match="another process is listening"):
        UnixSocketSink(str(path)).start()
    sink.close()
    assert not path.exists()


def test_unix_socket_refuses_to_clobber_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="not a socket"):
        UnixSocketSink(str(path)).start()
    assert path.read_text() == "keep me"


def test_stdout_sink_writes_lines_and_survives_broken_pipe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buf = io.StringIO()
    sink = StdoutSink(buf)
    sink.start()
    sink.emit(_event(1, "a"))
    sink.emit(_event(2, "a"))
    assert buf.getvalue() == (
        '{"v": 1, "type": "speech_start", "utterance_id": 1, "stream": "a", "start_s": 0.0, '
        '"ts": "2024-05-01T12:00:00.000Z"}\n'
        '{"v": 1, "type": "speech_start", "utterance_id": 2, "stream": "a", "start_s": 0.0, '
        '"ts": "2024-05-01T12:00:00.000Z"}\n')

    r, w = os.pipe()
    os.close(r)
    stream = os.fdopen(w, "w")
    broken = StdoutSink(stream)
    broken.start()
    broken.emit(_event(1, "a"))
    broken.emit(_event(2, "a"))
    broken.close()
    stream.close()
    assert broken.stats() == {"sink": "stdout", "written": 0, "lost": 2, "broken_pipe": True}
    assert sum("closed the pipe" in r.message for r in caplog.records) == 1


def test_target_parsing(tmp_path: Path) -> None:
    class Out:
        unix_mode = "0640"
        client_buffer_events = 7

    tcp = make_sink("tcp::0", Out())
    assert isinstance(tcp, TcpSink) and tcp.host == "127.0.0.1" and tcp.port == 0
    assert tcp.client_buffer_events == 7
    tcp6 = make_sink("tcp:[::1]:7700")
    assert isinstance(tcp6, TcpSink) and (tcp6.host, tcp6.port) == ("::1", 7700)
    unix = make_sink(f"unix:{tmp_path}/x.sock", Out())
    assert isinstance(unix, UnixSocketSink) and unix.mode == 0o640
    assert isinstance(make_sink("stdout"), StdoutSink)
    for bad in ("udp:1.2.3.4:5", "tcp:host:notaport", "tcp:1.2.3.4:70000", "unix:"):
        with pytest.raises(ConfigError):
            make_sink(bad)
    assert make_sink("tcp://127.0.0.1:7700").port == 7700  # type: ignore[attr-defined]
    assert make_sink("unix:///run/x.sock").path == "/run/x.sock"  # type: ignore[attr-defined]
    assert parse_mode("660") == 0o660 and parse_mode(0o600) == 0o600
    with pytest.raises(ConfigError):
        parse_mode("rw-rw----")


def test_open_sinks_closes_started_sinks_on_failure(tmp_path: Path) -> None:
    good = tmp_path / "ok.sock"
    with pytest.raises(ConfigError, match="does not exist"):
        open_sinks([f"unix:{good}", f"unix:{tmp_path}/missing/dir.sock"])
    assert not good.exists()
    with pytest.raises(ConfigError, match="empty"):
        open_sinks([])
