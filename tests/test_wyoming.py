"""The Wyoming server without a trained model: PCM decoding and the push source, the replies
(info, transcript + intent), the address and config, and the server itself in-process with a
fake backend and wyoming's own client: describe, a command, voice events, a client leaving
mid-audio (its stream freed), garbage, a refused width, too many clients, stopping."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from segmenter_helpers import harmonic
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event as WyomingEvent
from wyoming.info import Describe, Info
from wyoming.intent import Intent, NotRecognized
from wyoming.vad import VoiceStarted, VoiceStopped

from intentd.daemon.audio.push import PushSource, pcm_to_float
from intentd.daemon.config import load_config
from intentd.daemon.engine.supervisor import Supervisor
from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model.sentences import Sentences
from intentd.daemon.output.events import IntentEvent, LabelScore, SlotScore
from intentd.daemon.wyoming.replies import best_verdict, info_event, session_replies
from intentd.daemon.wyoming.settings import parse_uri

SR = 16000
CHUNK = 1024


# --------------------------------------------------------------------------- units


def test_pcm_to_float_decodes_s16le_and_refuses_other_widths() -> None:
    pcm = np.array([0, 16384, -32768, 32767, 1, 2], "<i2").tobytes()
    block = pcm_to_float(pcm + b"\x01", 2, 2)  # a trailing partial frame is dropped
    assert block.shape == (3, 2) and block.dtype == np.float32
    assert block[0, 1] == 0.5 and block[1, 0] == -1.0
    with pytest.raises(DataError, match="width 4"):
        pcm_to_float(b"\0" * 8, 4, 1)


def test_push_source_never_blocks_the_producer_and_ends_after_the_queue() -> None:
    src = PushSource("p", SR, 1, queue_blocks=2)
    one = np.ones((10, 1), np.float32)
    assert src.offer(one) and src.offer(one)
    assert not src.offer(one)  # full: the producer decides (waits, for Wyoming)
    assert src.read(0.01).shape == (10, 1)  # type: ignore[union-attr]
    assert src.read(0.01).shape == (10, 1)  # type: ignore[union-attr]
    assert src.read(0.01).shape == (0, 1)  # type: ignore[union-attr]
    src.offer(one)
    src.end()
    assert src.read(0.01) is not None  # what was queued is still read
    assert src.read(0.01) is None
    src.stop()
    assert src.offer(one)  # stopped: taken (dropped), so nobody waits for it
    assert src.stats()["blocks"] == 3


def _verdict(intent: str | None, score: float, slots: tuple[SlotScore, ...] = ()
             ) -> IntentEvent:
    return IntentEvent("intent" if intent else "no_match", intent, score,
                       (LabelScore(intent or "_none", score),), 0, "s", 0.0, 1.0, 1, 1.0,
                       0.0, "m", slots)


def test_replies_name_the_most_confident_command_with_its_canonical_sentence() -> None:
    sentences = Sentences({"HassTurnOn": {"name": "turn on the {name}"}},
                          {"name": {"kitchen_light": "kitchen light"}})
    slot = (SlotScore("name", "kitchen_light", 0.9),)
    verdicts = [_verdict(None, 0.3), _verdict("HassTurnOn", 0.9, slot), _verdict("x", 0.6)]
    assert best_verdict(verdicts) is verdicts[1]
    transcript, intent = session_replies(verdicts, sentences, "en")
    assert Transcript.from_event(transcript) == Transcript("turn on the kitchen light",
                                                           language="en")
    got = Intent.from_event(intent)
    assert (got.name, got.text) == ("HassTurnOn", "turn on the kitchen light")
    assert [(e.name, e.value) for e in got.entities] == [("name", "kitchen_light")]
    transcript, none = session_replies([_verdict(None, 0.4)], sentences, None)
    assert Transcript.from_event(transcript).text == ""
    assert NotRecognized.is_type(none.type) and NotRecognized.from_event(none).text == ""
    # Without the model's sentences: the intent's name as words.
    assert Transcript.from_event(session_replies([_verdict("lights_on", 0.8)], None,
                                                 None)[0]).text == "lights on"


class Backend:
    """Every utterance is ``lights_on`` (0.75); a ``_none`` class that is not an intent."""

    labels = ("lights_on", "weather", "_none")
    sample_rate_hz = SR
    name = "fake-model"
    sentences = Sentences({"lights_on": {"": "turn on the lights"}}, {})

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        return np.tile([0.75, 0.2, 0.05], (len(windows), 1))

    def utterance_scorer(self) -> Any:
        class Scorer:
            def push(self, samples: np.ndarray) -> None: ...

            def result(self) -> np.ndarray:
                return np.array([0.75, 0.2, 0.05])

        return Scorer()


def test_info_describes_an_asr_and_an_intent_program() -> None:
    event = info_event(Backend(), ["en", "de"], "9.9")  # type: ignore[arg-type]
    info = Info.from_event(event)
    (asr,), (intent,) = info.asr, info.intent
    assert asr.name == intent.name == "intentd" and asr.installed and asr.version == "9.9"
    assert asr.models[0].name == intent.models[0].name == "fake-model"
    assert asr.models[0].languages == ["en", "de"]
    assert event.data["intent"][0]["models"][0]["intents"] == ["lights_on", "weather"]


def test_the_wyoming_address_uses_the_outputs_parser_and_config() -> None:
    assert parse_uri("tcp://0.0.0.0:10300").port == 10300
    assert parse_uri("unix:///run/intentd/wyoming.sock").path == "/run/intentd/wyoming.sock"
    for bad in ("stdout", "mqtt://broker", "tcp://host:99999", "http://x:1"):
        with pytest.raises(ValueError, match="tcp://HOST:PORT"):
            parse_uri(bad)
    with pytest.raises(ConfigError, match=r"wyoming.uri = 'stdout' is invalid"):
        load_config(None, {"wyoming.uri": "stdout"})
    cfg = load_config(None, {"wyoming.uri": "tcp://127.0.0.1:0", "inputs": []})
    assert cfg.inputs == () and cfg.wyoming.languages == ("en",)
    with pytest.raises(ConfigError, match="inputs = "):
        load_config(None, {"inputs": []})  # without the server a daemon needs an input
    from intentd.daemon.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["--wyoming", "tcp://127.0.0.1:0"])
    assert overrides_from_args(args)["inputs"] == []  # --wyoming alone: no microphone


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def daemon() -> Iterator[Supervisor]:
    cfg = load_config(None, {"wyoming.uri": "tcp://127.0.0.1:0", "inputs": [],
                             "output.speech_events": True, "wyoming.max_clients": 3})

    class Quiet:
        name = "quiet"

        def start(self) -> None: ...

        def emit(self, event: Any) -> None: ...

        def close(self) -> None: ...

        def stats(self) -> dict[str, Any]:
            return {"sink": self.name}

    sup = Supervisor(cfg, load_backend=lambda m: Backend(),  # type: ignore[arg-type,return-value]
                     sink_opener=lambda targets, out, stdout=None, **k: [Quiet()])
    sup.open_inputs()
    sup.load_model()
    sup.open_outputs()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    yield sup
    sup.request_stop()
    runner.join(5)
    assert not runner.is_alive() and codes == [0]


def _port(sup: Supervisor) -> int:
    assert sup.wyoming is not None
    return int(sup.wyoming.address.rsplit(":", 1)[1])


def _command() -> bytes:
    audio = np.concatenate([np.zeros(SR // 2, np.float32), harmonic(SR),
                            np.zeros(2 * SR, np.float32)])
    return (audio * 32767).astype("<i2").tobytes()


async def _send(client: AsyncTcpClient, pcm: bytes, stop: bool = True) -> None:
    await client.write_event(Transcribe(language="en").event())
    await client.write_event(AudioStart(SR, 2, 1).event())
    for i in range(0, len(pcm), 2 * CHUNK):
        await client.write_event(AudioChunk(SR, 2, 1, pcm[i: i + 2 * CHUNK]).event())
    if stop:
        await client.write_event(AudioStop().event())


async def _until(client: AsyncTcpClient, *types: str) -> list[WyomingEvent]:
    got: list[WyomingEvent] = []
    while not got or got[-1].type not in types:
        event = await asyncio.wait_for(client.read_event(), 20)
        assert event is not None, f"connection closed after {[e.type for e in got]}"
        got.append(event)
    return got


def _wait(cond: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_command_gets_voice_events_a_transcript_and_an_intent(daemon: Supervisor) -> None:
    async def session() -> list[WyomingEvent]:
        async with AsyncTcpClient("127.0.0.1", _port(daemon)) as client:
            await client.write_event(Describe().event())
            info = Info.from_event((await _until(client, "info"))[-1])
            assert [p.name for p in info.asr] == ["intentd"]
            await _send(client, _command())
            return await _until(client, "intent", "not-recognized")

    events = asyncio.run(session())
    types = [e.type for e in events]
    assert types == ["voice-started", "voice-stopped", "transcript", "intent"], types
    assert VoiceStarted.from_event(events[0]).timestamp == pytest.approx(500, abs=300)
    assert VoiceStopped.from_event(events[1]).timestamp > 1000
    assert Transcript.from_event(events[2]).text == "turn on the lights"
    assert Intent.from_event(events[3]).name == "lights_on"
    assert daemon.engine is not None
    _wait(lambda: not daemon.engine.streams())  # type: ignore[union-attr]
    assert daemon.engine.ended() == {} and daemon.sources == {}


def test_a_client_leaving_mid_audio_frees_its_stream_and_others_go_on(
        daemon: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert daemon.engine is not None and daemon.wyoming is not None

    async def leave() -> None:
        client = AsyncTcpClient("127.0.0.1", _port(daemon))
        await client.connect()
        await _send(client, _command()[: SR], stop=False)  # half a second, then gone
        await asyncio.sleep(0.2)
        assert len(daemon.engine.streams()) == 1  # type: ignore[union-attr]
        await client.disconnect()

    asyncio.run(leave())
    _wait(lambda: not daemon.engine.streams())  # type: ignore[union-attr]
    assert daemon.wyoming.stats()["streams_open"] == 0
    assert any("left mid-audio" in r.getMessage() for r in caplog.records)

    async def garbage_then_command() -> list[WyomingEvent]:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(daemon))
        writer.write(b"this is not an event\n[1, 2]\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing else
        writer.close()
        async with AsyncTcpClient("127.0.0.1", _port(daemon)) as client:
            await client.write_event(WyomingEvent("no-such-event", {"x": 1}))
            await client.write_event(AudioStart(SR, 4, 1).event())  # 32-bit: refused once
            await client.write_event(AudioChunk(SR, 4, 1, b"\0" * 4096).event())
            await client.write_event(AudioStop().event())
            refused = await _until(client, "error")
            await _send(client, _command())
            return refused + await _until(client, "intent", "not-recognized")

    events = asyncio.run(garbage_then_command())
    assert Error.from_event(events[0]).text.startswith("audio width 4")
    assert [e.type for e in events][-2:] == ["transcript", "intent"]
    assert sum(e.type == "error" for e in events) == 1


def test_clients_beyond_max_clients_are_refused(daemon: Supervisor) -> None:
    async def crowd() -> list[str]:
        clients = [AsyncTcpClient("127.0.0.1", _port(daemon)) for _ in range(4)]
        for c in clients:
            await c.connect()
            await asyncio.sleep(0.05)  # accepted in order
        first = await asyncio.wait_for(clients[3].read_event(), 5)
        for c in clients:
            await c.disconnect()
        return [first.type if first else "closed", Error.from_event(first).code or ""]

    assert asyncio.run(crowd()) == ["error", "busy"]


def test_a_unix_socket_server_answers_and_leaves_no_socket_file(tmp_path: Any) -> None:
    from wyoming.client import AsyncUnixClient

    path = tmp_path / "wyoming.sock"
    cfg = load_config(None, {"wyoming.uri": f"unix://{path}", "inputs": []})
    sup = Supervisor(cfg, load_backend=lambda m: Backend(),  # type: ignore[arg-type,return-value]
                     sink_opener=lambda targets, out, stdout=None, **k: [])
    runner = threading.Thread(target=sup.run)
    runner.start()
    assert sup.ready.wait(10)

    async def describe() -> WyomingEvent | None:
        async with AsyncUnixClient(str(path)) as client:
            await client.write_event(Describe().event())
            return await asyncio.wait_for(client.read_event(), 5)

    event = asyncio.run(describe())
    assert event is not None and Info.is_type(event.type)
    sup.request_stop()
    runner.join(5)
    assert not runner.is_alive() and not path.exists()


# --------------------------------------------------------------------------- the example spec


def test_the_home_assistant_example_spec_loads_and_reads_like_home_assistant() -> None:
    from pathlib import Path

    from intentd.trainer.synthesis.canonical import sentence_patterns
    from intentd.trainer.synthesis.spec_file import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "examples/intents/homeassistant.yaml")
    assert {"HassTurnOn", "HassTurnOff", "HassLightSet", "HassStartTimer",
            "HassCancelTimer"} <= set(spec.labels)
    assert all(len(templates) >= 3 for templates in spec.intents.values())
    assert set(spec.intent_slots["HassLightSet"]) == {"name", "area", "brightness"}
    patterns = sentence_patterns(spec)
    # Home Assistant's own sentence forms ("<turn> on <name>", "timer for <duration>", ...).
    assert patterns["HassTurnOn"]["name"] == "turn on {name}"
    assert patterns["HassTurnOff"]["area"] == "turn off lights in {area}"
    assert patterns["HassLightSet"]["brightness,name"] == "set {name} brightness to {brightness}"
    assert patterns["HassStartTimer"]["minutes"] == "set a timer for {minutes}"
    assert patterns["HassCancelTimer"][""] == "cancel the timer"
