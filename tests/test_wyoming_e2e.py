"""End to end: ``intentd --wyoming tcp://127.0.0.1:0`` (a subprocess, the compact model) and
clients written with the ``wyoming`` package's own classes, as Home Assistant's are.

Held-out generated commands go in 1024-sample chunks of 16 kHz s16le, 0.5 s of silence
before and after: ``describe`` -> ``info``; each command -> one ``transcript`` and an
``intent`` with the right name (the model's accuracy allowed: >= 90%); 8 clients at once,
each with its own answers; a client that vanishes mid-audio frees its stream; SIGTERM ends
the daemon with 0; a port in use is one line and exit 2.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event as WyomingEvent
from wyoming.info import Describe, Info
from wyoming.intent import Intent

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SR = 16000
CHUNK = 1024  # samples per audio-chunk
PAD_S = 0.5
PER_INTENT = 8  # held-out commands per intent
CLIENTS = 8
PORT_RE = re.compile(r"wyoming: listening on tcp://127\.0\.0\.1:(\d+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(model: Path, workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"daemon-{time.monotonic_ns()}.log"
    with open(workdir / "events.jsonl", "ab") as out, open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "intentd.daemon", "--model", str(model),
                                 *extra], cwd=workdir, env=_env(), stdout=out, stderr=err)
    return proc, log


def _wait_port(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = PORT_RE.search(log.read_text(errors="replace"))
        if found and "ready:" in log.read_text(errors="replace"):
            return int(found.group(1))
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no port logged in time:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def commands(synth_data: Path) -> list[tuple[str, bytes]]:
    """(intent, s16le PCM at 16 kHz with 0.5 s of silence around) per held-out command."""
    import soxr

    with open(synth_data / "test" / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    picked: list[dict[str, str]] = []
    for label in sorted({r["label"] for r in rows}):
        picked += [r for r in rows if r["label"] == label][:PER_INTENT]
    out = []
    pad = np.zeros(int(PAD_S * SR), np.float32)
    for row in picked:
        audio, rate = sf.read(synth_data / "test" / row["file_name"], dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if rate != SR:
            audio = soxr.resample(audio, rate, SR)
        audio = np.concatenate([pad, audio, pad])
        out.append((row["label"], (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()))
    # Shuffled, so that any client's share holds several intents.
    return [out[i] for i in np.random.default_rng(0).permutation(len(out))]


@pytest.fixture(scope="module")
def daemon(compact_model: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    work = tmp_path_factory.mktemp("wyoming")
    proc, log = _start(compact_model, work, "--wyoming", "tcp://127.0.0.1:0")
    try:
        yield _wait_port(proc, log), proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _session(client: AsyncTcpClient, pcm: bytes) -> list[WyomingEvent]:
    """One command: transcribe, audio-start, chunks, audio-stop; every event until the
    intent answer."""
    await client.write_event(Transcribe(language="en").event())
    await client.write_event(AudioStart(SR, 2, 1).event())
    for i in range(0, len(pcm), 2 * CHUNK):
        await client.write_event(AudioChunk(SR, 2, 1, pcm[i: i + 2 * CHUNK]).event())
    await client.write_event(AudioStop().event())
    got: list[WyomingEvent] = []
    while not got or got[-1].type not in ("intent", "not-recognized", "error"):
        event = await asyncio.wait_for(client.read_event(), 120)
        assert event is not None, f"closed after {[e.type for e in got]}"
        got.append(event)
    return got


async def _client(port: int, cmds: list[tuple[str, bytes]]) -> list[list[WyomingEvent]]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        return [await _session(client, pcm) for _, pcm in cmds]


def _check(cmds: list[tuple[str, bytes]], answers: list[list[WyomingEvent]]) -> int:
    """Asserts one transcript and one answer per command; the number named right."""
    right = 0
    for (label, _), events in zip(cmds, answers, strict=True):
        types = [e.type for e in events]
        assert types.count("transcript") == 1 and types[-1] in ("intent", "not-recognized"), \
            types
        assert types.index("transcript") == len(types) - 2, types
        if types[-1] == "intent":
            intent = Intent.from_event(events[-1])
            text = Transcript.from_event(events[-2]).text
            assert text and intent.text == text
            right += intent.name == label
    return right


def test_describe_answers_info_with_the_models_intents(
        daemon: tuple[int, Any, Path], compact_model: Path) -> None:
    port, _, _ = daemon

    async def describe() -> WyomingEvent:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), 20)
            assert event is not None
            return event

    event = asyncio.run(describe())
    info = Info.from_event(event)
    labels = json.loads((compact_model / "config.json").read_text())["id2label"].values()
    intents = sorted(x for x in labels if x != "_none")
    assert [p.name for p in info.asr] == ["intentd"] and [p.name for p in info.intent] == [
        "intentd"]
    assert info.asr[0].installed and info.asr[0].models[0].languages == ["en"]
    assert info.asr[0].version and info.asr[0].models[0].attribution.name
    assert sorted(event.data["intent"][0]["models"][0]["intents"]) == intents


def test_each_command_gets_a_transcript_and_the_right_intent(
        daemon: tuple[int, Any, Path], commands: list[tuple[str, bytes]]) -> None:
    port, _, _ = daemon
    answers = asyncio.run(_client(port, commands))
    right = _check(commands, answers)
    assert right >= 0.9 * len(commands), f"{right} of {len(commands)}"


def test_eight_clients_at_once_each_get_their_own_answers(
        daemon: tuple[int, Any, Path], commands: list[tuple[str, bytes]]) -> None:
    port, _, _ = daemon
    shares = [commands[k::CLIENTS] for k in range(CLIENTS)]

    async def crowd() -> list[list[list[WyomingEvent]]]:
        return list(await asyncio.gather(*(_client(port, share) for share in shares)))

    t0 = time.monotonic()
    results = asyncio.run(crowd())
    right = sum(_check(share, got) for share, got in zip(shares, results, strict=True))
    assert right >= 0.9 * len(commands), f"{right} of {len(commands)}"
    assert time.monotonic() - t0 < 300


def test_a_client_vanishing_mid_audio_frees_its_stream_then_sigterm_exits_0(
        daemon: tuple[int, subprocess.Popen[bytes], Path],
        commands: list[tuple[str, bytes]]) -> None:
    port, proc, log = daemon

    async def vanish() -> None:
        client = AsyncTcpClient("127.0.0.1", port)
        await client.connect()
        await client.write_event(AudioStart(SR, 2, 1).event())
        pcm = commands[0][1]
        for i in range(0, len(pcm) // 2, 2 * CHUNK):
            await client.write_event(AudioChunk(SR, 2, 1, pcm[i: i + 2 * CHUNK]).event())
        await client.disconnect()  # gone mid-utterance, no audio-stop

    asyncio.run(vanish())
    deadline = time.monotonic() + 20
    while "left mid-audio" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    # The others still work, and the engine holds no stream once the clients are done.
    answers = asyncio.run(_client(port, commands[:3]))
    assert _check(commands[:3], answers) >= 2
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)  # the status: every stream the engine still holds
    deadline = time.monotonic() + 20
    while "status: " not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = json.loads(log.read_text().split("status: ", 1)[1].splitlines()[0])
    assert status["streams"] == {}, status["streams"]
    wyoming = next(s for s in status["sinks"] if s["sink"].startswith("wyoming:"))
    assert wyoming["streams_open"] == 0 and wyoming["streams_freed"] >= 4
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 3.0
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_a_port_in_use_is_one_line_and_exit_2(compact_model: Path, tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc, log = _start(compact_model, tmp_path, "--wyoming", f"tcp://127.0.0.1:{port}")
        assert proc.wait(120) == 2
    finally:
        busy.close()
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("intentd: error:")]
    assert len(errors) == 1 and "cannot listen" in errors[0] and str(port) in errors[0], text
    assert "Traceback" not in text
