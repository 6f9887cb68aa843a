"""End to end: ``intentd --listen ws://127.0.0.1:0/media --listen tcp://127.0.0.1:0`` (a
subprocess, the compact model) fed by ``intentd-replay``, as a telephony platform would.

32 concurrent calls at real-time pace, two tracks each (64 streams): generated calls
(held-out voices, a phone line's band, 8 kHz mu-law on the wire), 8 distinct ones reused
under different callSids. Every utterance's intent is emitted exactly once, under the
right stream and call ids, >= 90% right; meanwhile one client sends garbage and one hangs
up mid-utterance, and the others are unaffected. Then TCP ingest (mu-law and s16le, a bad
header refused), admission (``max_streams: 2``: a third stream refused with the reason),
SIGTERM -> exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_FILES = 8
N_CALLS = 32
UTTERANCES = 3
WS_RE = re.compile(r"telephony: listening on ws://127\.0\.0\.1:(\d+)/media")
TCP_RE = re.compile(r"telephony: listening on tcp://127\.0\.0\.1:(\d+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Daemon:
    def __init__(self, model: Path, work: Path, *extra: str) -> None:
        self.log = work / f"daemon-{time.monotonic_ns()}.log"
        self.events = work / f"events-{time.monotonic_ns()}.jsonl"
        with open(self.events, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "intentd.daemon", "--model", str(model), "--listen",
                 "ws://127.0.0.1:0/media", "--listen", "tcp://127.0.0.1:0", "--output",
                 "stdout", *extra], cwd=work, env=_env(), stdout=out, stderr=err)
        deadline = time.monotonic() + 120
        while not ("ready:" in self.text() and WS_RE.search(self.text())):
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.1)
        self.url = f"ws://127.0.0.1:{WS_RE.search(self.text()).group(1)}/media"  # type: ignore[union-attr]
        self.tcp = ("127.0.0.1", int(TCP_RE.search(self.text()).group(1)))  # type: ignore[union-attr]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def verdicts(self) -> list[dict[str, Any]]:
        lines = self.events.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["type"] in ("intent", "no_match")]

    def status(self) -> dict[str, Any]:
        """The daemon's status (SIGUSR1), the newest."""
        before = self.text().count("status: ")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 20
        while self.text().count("status: ") == before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return json.loads(self.text().rsplit("status: ", 1)[1].splitlines()[0])

    def wait_idle(self, timeout_s: float = 240) -> None:
        """Until the engine holds no stream: every stream's last event is out."""
        deadline = time.monotonic() + timeout_s
        while self.status()["streams"]:
            assert time.monotonic() < deadline, self.status()["streams"].keys()
            time.sleep(0.5)

    def stop(self) -> int:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        assert time.monotonic() - t0 < 3.0
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory, tiny_spec: Path
          ) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    """A folder of 8 phone-line calls (8 kHz WAV) and each file's truth rows."""
    from intentd.trainer.synthesis.democall import make_call

    d = tmp_path_factory.mktemp("calls")
    truth = {}
    for k in range(N_FILES):
        wav, rows = d / f"call{k}.wav", d / f"call{k}.csv"
        # voice_seed 0: the voices the fixture model (synth seed 0) never heard.
        make_call(tiny_spec, wav, rows, n_utterances=UTTERANCES, seed=300 + k, voice_seed=0,
                  sample_rate_hz=8000)
        with open(rows, newline="", encoding="utf-8") as f:
            truth[wav.name] = list(csv.DictReader(f))  # (replay takes only the audio)
    return d, truth


@pytest.fixture(scope="module")
def daemon(compact_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("telephony")
    # 64 call tracks, the vanishing call and the TCP streams: over the default 64.
    (work / "config.yaml").write_text("telephony:\n  max_streams: 80\n")
    d = Daemon(compact_model, work, "--config", str(work / "config.yaml"))
    try:
        yield d
    finally:
        d.kill()


def _replay(url: str, folder: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "intentd.daemon.telephony.replay", url,
                             str(folder), "--calls-out", str(out), *extra], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _overlaps(v: dict[str, Any], row: dict[str, str]) -> bool:
    return v["start_s"] < float(row["end_s"]) and v["end_s"] > float(row["start_s"])


def _match(events: list[dict[str, Any]], rows: list[dict[str, str]]
           ) -> tuple[int, int, list[str]]:
    """(utterances heard exactly once, named right, problems) by time overlap: an utterance
    is heard once when one verdict overlaps it and that verdict overlaps no other."""
    once = right = 0
    problems = []
    for row in rows:
        hits = [v for v in events if _overlaps(v, row)]
        alone = len(hits) == 1 and sum(_overlaps(hits[0], r) for r in rows) == 1
        if alone:
            once += 1
            right += hits[0]["intent"] == row["intent"]
        else:
            problems.append(f"{row['intent']} at {row['start_s']}-{row['end_s']}: "
                            f"{[(v['start_s'], v['end_s']) for v in hits]}")
    return once, right, problems


def _extra(events: list[dict[str, Any]], rows: list[dict[str, str]]) -> int:
    """Verdicts on no utterance (line noise taken for speech)."""
    return sum(not any(_overlaps(v, r) for r in rows) for v in events)


async def _garbage(url: str) -> list[tuple[int | None, str]]:
    out = []
    for first in ("hello, is this thing on?", json.dumps({"event": "start", "start": {
            "streamSid": "MZbad", "callSid": "CAbad", "mediaFormat": {
                "encoding": "audio/L16", "sampleRate": 16000, "channels": 1}}})):
        async with connect(url) as ws:
            await ws.send(first)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            out.append((ws.close_code, ws.close_reason or ""))
    return out


async def _vanish(url: str, wav: Path, rows: list[dict[str, str]]) -> None:
    """A call that drops half a second into its first utterance: no stop, no close frame."""
    from intentd.daemon.telephony.messages import encode_mulaw

    audio, _ = sf.read(str(wav), dtype="float32")
    cut = int((float(rows[0]["start_s"]) + 0.5) * 8000)
    pcm = encode_mulaw(audio[:cut])
    ws = await connect(url)
    await ws.send(json.dumps({"event": "start", "start": {
        "streamSid": "MZvanish", "callSid": "CAvanish", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    t0 = time.monotonic()
    for i in range(0, len(pcm), 160):
        await asyncio.sleep(max(0.0, t0 + i / 8000 - time.monotonic()))
        await ws.send(json.dumps({"event": "media", "media": {
            "track": "inbound", "timestamp": str(i // 8), "payload":
                base64.b64encode(pcm[i:i + 160]).decode()}}))
    ws.transport.abort()  # the line drops


def test_32_calls_at_real_time_each_utterance_once_with_its_ids(
        daemon: Daemon, calls: tuple[Path, dict[str, list[dict[str, str]]]],
        tmp_path: Path) -> None:
    folder, truth = calls
    files = sorted(p.name for p in folder.glob("*.wav"))
    out = tmp_path / "calls.jsonl"
    t0 = time.monotonic()
    replay = _replay(daemon.url, folder, out, "--calls", str(N_CALLS), "--tracks", "both",
                     "--call-prefix", "CAe2e", "--param", "campaign=spring")
    bad: list[Any] = []
    side = threading.Thread(target=lambda: bad.extend(asyncio.run(_garbage(daemon.url))))
    vanish = threading.Thread(target=asyncio.run, args=(_vanish(
        daemon.url, folder / files[0], truth[files[0]]),))
    side.start()
    vanish.start()
    stdout, stderr = replay.communicate(timeout=600)
    side.join(30)
    vanish.join(30)
    summary = json.loads(stdout.splitlines()[-1])
    assert replay.returncode == 0 and summary["ok"] == N_CALLS, (summary, stderr[-2000:])
    daemon.wait_idle()
    wall = time.monotonic() - t0
    tele = daemon.status()["telephony"]  # nothing left behind: every stream freed
    assert tele["streams_held"] == 0 and tele["streams_freed"] == tele["streams_opened"] == 65
    assert tele["dropped_blocks"] == 0 and tele["protocol_errors"] == 2, tele

    # The garbage client and the vanished call: a reason each, their streams gone.
    assert bad[0] == (1008, "a message is not JSON"), bad
    assert bad[1][0] == 1008 and "encoding 'audio/l16' is not supported" in bad[1][1], bad
    assert "telephony call CAvanish (" in daemon.text()
    assert "the connection closed without stop; its streams end" in daemon.text()

    verdicts = daemon.verdicts()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    total = once = right = extra = 0
    problems: list[str] = []
    for r in results:
        call = {"callSid": r["callSid"], "streamSid": r["streamSid"], "customParameters": {
            "file": r["inbound"], "outbound_file": r["outbound"], "campaign": "spring"}}
        for track, wav in (("inbound", r["inbound"]), ("outbound", r["outbound"])):
            mine = [v for v in verdicts if v["stream"] == f"{r['callSid']}/{track}"]
            assert all(v["call"] == call for v in mine), (mine, call)
            o, k, p = _match(mine, truth[wav])
            extra += _extra(mine, truth[wav])
            total += len(truth[wav])
            once, right = once + o, right + k
            problems += [f"{r['callSid']}/{track} {wav}: {x}" for x in p]
    streams = {v["stream"] for v in verdicts}
    assert streams - {"CAvanish/inbound"} == {f"CAe2e{k:04d}/{t}" for k in range(N_CALLS)
                                              for t in ("inbound", "outbound")}
    print(f"{N_CALLS} calls, {total} utterances: {once} heard once, {right} right; "
          f"{len(verdicts)} verdicts ({extra} on noise); {wall:.0f} s; replay {summary}")
    assert once == total, problems[:10]
    assert extra <= 0.02 * total, f"{extra} verdicts on line noise"
    assert right >= 0.9 * total, f"{right} of {total}"
    assert "Traceback" not in daemon.text()


def _tcp_stream(address: tuple[str, int], header: dict[str, Any], audio: bytes) -> bytes:
    with socket.create_connection(address, timeout=30) as s:
        s.sendall(json.dumps(header).encode() + b"\n")
        for i in range(0, len(audio), 4000):
            s.sendall(audio[i:i + 4000])
        s.shutdown(socket.SHUT_WR)
        return s.makefile("rb").read()  # nothing back for an accepted stream


def test_tcp_ingest_mulaw_and_s16le_and_a_bad_header(
        daemon: Daemon, calls: tuple[Path, dict[str, list[dict[str, str]]]]) -> None:
    from intentd.daemon.telephony.messages import encode_mulaw

    folder, truth = calls
    a, b = sorted(folder.glob("*.wav"))[1:3]
    audio_a, _ = sf.read(str(a), dtype="float32")
    audio_b, _ = sf.read(str(b), dtype="int16")
    call = {"callSid": "CAtcp", "streamSid": "tcp-1", "customParameters": {"agent": "7"}}
    threads = [
        threading.Thread(target=_tcp_stream, args=(daemon.tcp, {
            "stream": "tcp-mulaw", "rate_hz": 8000, "format": "mulaw", "call": call},
            encode_mulaw(audio_a))),
        threading.Thread(target=_tcp_stream, args=(daemon.tcp, {
            "stream": "tcp-s16", "rate_hz": 8000, "format": "s16le", "channels": 1},
            audio_b.astype("<i2").tobytes()))]
    for t in threads:
        t.start()
    reply = _tcp_stream(daemon.tcp, {"stream": "x", "rate_hz": 8000, "format": "wav"}, b"")
    assert json.loads(reply)["code"] == "bad-header" and "wav" in json.loads(reply)["error"]
    for t in threads:
        t.join(120)
    daemon.wait_idle()
    verdicts = daemon.verdicts()
    for stream, wav in (("tcp-mulaw", a.name), ("tcp-s16", b.name)):
        mine = [v for v in verdicts if v["stream"] == stream]
        once, right, problems = _match(mine, truth[wav])
        assert once == len(truth[wav]) and right >= len(truth[wav]) - 1, (stream, problems)
        assert all(("call" in v) == (stream == "tcp-mulaw") for v in mine)
    assert all(v["call"] == call for v in verdicts if v["stream"] == "tcp-mulaw")


def test_sigterm_exits_0_quickly(daemon: Daemon) -> None:
    assert daemon.stop() == 0
    text = daemon.text()
    assert "Traceback" not in text and "telephony: summary" in text, text[-3000:]


def test_admission_refuses_a_third_stream_with_the_reason(
        compact_model: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("telephony:\n  max_streams: 2\n")
    d = Daemon(compact_model, tmp_path, "--config", str(tmp_path / "config.yaml"))

    def start(sid: str) -> str:
        return json.dumps({"event": "start", "start": {
            "streamSid": f"MZ{sid}", "callSid": f"CA{sid}", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    async def crowd() -> tuple[int | None, str]:
        async with connect(d.url) as one, connect(d.url) as two:
            await one.send(start("1"))
            await two.send(start("2"))
            await asyncio.sleep(0.5)
            async with connect(d.url) as three:
                # Refused as soon as it is accepted: the send may already find it closed.
                with pytest.raises(ConnectionClosed):
                    await three.send(start("3"))
                    await asyncio.wait_for(three.recv(), 10)
                refused = (three.close_code, three.close_reason or "")
            with socket.create_connection(d.tcp, timeout=10) as s:
                s.sendall(b'{"stream": "four", "rate_hz": 8000}\n')
                line = s.makefile("rb").readline()
            assert json.loads(line)["code"] == "busy"
            return refused

    try:
        code, reason = asyncio.run(crowd())
        assert code == 1013, reason
        assert reason == "too many streams (2, telephony.max_streams); try again later"
        assert "refused: too many streams" in d.text()
        assert d.stop() == 0
    finally:
        d.kill()
