"""The MQTT sink against a real mosquitto broker: Hermes payloads, intentd's own topics, a
broker that is down at start-up or goes away, the bounded queue, and the target parser."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from broker import Broker, Subscriber, free_port

from intentd.daemon.config import MqttConfig
from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import (
    IntentEvent,
    LabelScore,
    SlotScore,
    SpeechStartEvent,
    to_json_line,
)
from intentd.daemon.output.mqtt import MqttSink
from intentd.daemon.output.targets import parse_target

TS = 1714564803.4567


def _event(uid: int, intent: str | None = "set_brightness", stream: str = "kitchen",
           slots: tuple[SlotScore, ...] | None = None, text: str | None = None) -> IntentEvent:
    top = (LabelScore(intent or "_none", 0.93456),)
    return IntentEvent("intent" if intent else "no_match", intent, 0.93456, top, uid, stream,
                       1.0, 2.5, 3, 12.0, TS, "home", slots=slots, text=text)


def _sink(port: int, query: str = "", **settings: object) -> MqttSink:
    cfg = MqttConfig(**settings)  # type: ignore[arg-type]
    sink = MqttSink(parse_target(f"mqtt://127.0.0.1:{port}{query}"), cfg)
    sink.start()
    return sink


def test_target_parser_forms() -> None:
    t = parse_target("mqtts://ha:s%40cret@broker.lan?site_id=kitchen&topic_prefix=home/voice")
    assert (t.kind, t.host, t.port, t.user, t.password) == ("mqtts", "broker.lan", 8883, "ha",
                                                            "s@cret")
    assert t.option("site_id") == "kitchen" and t.option("topic_prefix") == "home/voice"
    assert "cret" not in str(t) and "cret" not in repr(t)
    assert parse_target("mqtt://[::1]").port == 1883
    for bad, says in (("mqtt:broker", "URLs"), ("mqtt://h/x", "no path"),
                      ("mqtt://h?qos=1", "unknown mqtt option"), ("mqtt://h:70000", "range"),
                      ("mqtt://?site_id=a", "broker host"), ("mqtt://h?site_id=a/b", "wildcards"),
                      ("exec:", "needs a program")):
        with pytest.raises(ValueError, match=says):
            parse_target(bad)


def test_hermes_and_event_payloads_exact(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, ("hermes/#", "intentd/#"))
    sink = _sink(broker.port, "?site_id=living")
    try:
        slots = (SlotScore("level", "50", 0.8, "fifty percent"),
                 SlotScore("room", "kitchen", 0.99))
        ev = _event(7, slots=slots, text="set the kitchen light to fifty percent")
        sink.emit(ev)
        sink.emit(_event(8, intent=None, slots=(), text=""))
        sink.emit(SpeechStartEvent(9, "kitchen", 4.0, TS))
        got = sub.wait_for(5, 10)
    finally:
        sink.close()
        sub.close()
        broker.stop()
    assert [t for t, _ in got] == ["hermes/intent/set_brightness", "intentd/kitchen/event",
                                   "hermes/nlu/intentNotRecognized", "intentd/kitchen/event",
                                   "intentd/kitchen/event"]
    text = "set the kitchen light to fifty percent"
    assert got[0][1] == {
        "input": text,
        "intent": {"intentName": "set_brightness", "confidenceScore": 0.9346},
        "siteId": "living", "id": "kitchen-7", "sessionId": "kitchen-7",
        "slots": [
            {"entity": "level", "slotName": "level", "value": {"kind": "Number", "value": 50},
             "rawValue": "fifty percent", "confidence": 0.8,
             "range": {"start": 25, "end": 38, "rawStart": 25, "rawEnd": 38}},
            {"entity": "room", "slotName": "room",
             "value": {"kind": "Unknown", "value": "kitchen"}, "rawValue": "kitchen",
             "confidence": 0.99, "range": {"start": 8, "end": 15, "rawStart": 8,
                                           "rawEnd": 15}}],
        "customData": None, "asrTokens": [], "asrConfidence": None, "rawInput": text,
        "wakewordId": None, "lang": None}
    assert text[25:38] == "fifty percent" and text[8:15] == "kitchen"
    assert got[1][1] == json.loads(to_json_line(ev))
    assert got[2][1] == {"input": "", "siteId": "living", "id": "kitchen-8",
                         "sessionId": "kitchen-8", "customData": None}
    assert got[4][1]["type"] == "speech_start"


def test_site_id_is_the_stream_and_a_model_without_sentences_still_says_words(
        tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, ("hermes/#",))
    sink = _sink(broker.port, events=False, lang="en", qos=0)
    try:
        sink.emit(_event(1, intent="lights_on", stream="hall",
                         slots=(SlotScore("room", "hall", 0.9),)))
        got = sub.wait_for(1, 10)
    finally:
        sink.close()
        sub.close()
        broker.stop()
    assert len(got) == 1
    topic, payload = got[0]
    assert topic == "hermes/intent/lights_on"
    assert (payload["siteId"], payload["input"], payload["lang"]) == ("hall", "lights on hall",
                                                                      "en")


def test_broker_down_at_start_then_up_delivers_in_order(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, ("hermes/#",))
    broker.stop()  # the subscriber's session stays on disk
    caplog.set_level(logging.INFO, logger="intentd.daemon.output.mqtt")
    sink = _sink(broker.port, reconnect_max_s=1.0)
    try:
        for uid in range(20):
            sink.emit(_event(uid))
        time.sleep(1.5)
        assert sink.stats()["published"] == 0 and sink.stats()["waiting"] == 40
        broker.start()
        got = sub.wait_for(20, 20)
    finally:
        sink.close()
        sub.close()
        broker.stop()
    assert [p["id"] for _, p in got] == [f"kitchen-{i}" for i in range(20)]
    assert "cannot connect to mqtt://127.0.0.1" in caplog.text
    assert "40 waiting message(s) go out now" in caplog.text


def test_broker_stopped_and_restarted_loses_nothing(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, ("hermes/#",))
    sink = _sink(broker.port, reconnect_max_s=1.0)
    try:
        for uid in range(10):
            sink.emit(_event(uid))
        assert len(sub.wait_for(10, 10)) == 10
        broker.stop()
        for uid in range(10, 25):
            sink.emit(_event(uid))
        time.sleep(1.0)
        broker.start()
        got = sub.wait_for(25, 30)
    finally:
        sink.close()
        sub.close()
        broker.stop()
    assert [p["id"] for _, p in got] == [f"kitchen-{i}" for i in range(25)]


def test_full_queue_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    port = free_port()  # nothing listens
    sink = _sink(port, queue_events=5, events=False)
    try:
        for uid in range(8):
            sink.emit(_event(uid))
        st = sink.stats()
    finally:
        sink.close()
    assert (st["dropped"], st["waiting"], st["published"]) == (3, 5, 0)
    assert [json.loads(p)["id"] for _, p in sink._queue] == [f"kitchen-{i}" for i in range(3, 8)]


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not mqtts://"):
        MqttSink(parse_target("mqtt://127.0.0.1"), MqttConfig(ca_file=str(tmp_path))).start()
    with pytest.raises(ConfigError, match="does not exist"):
        MqttSink(parse_target("mqtts://127.0.0.1"),
                 MqttConfig(ca_file=str(tmp_path / "ca.pem"))).start()
    pem = tmp_path / "c.pem"
    pem.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        MqttSink(parse_target("mqtts://127.0.0.1"), MqttConfig(cert_file=str(pem))).start()


def test_mqtts_verifies_the_broker_with_the_configured_ca(tmp_path: Path) -> None:
    broker = Broker(tmp_path, tls=True).start()
    sink = MqttSink(parse_target(f"mqtts://127.0.0.1:{broker.port}"),
                    MqttConfig(ca_file=str(broker.ca)))
    sink.start()
    try:
        sink.emit(_event(1))
        deadline = time.monotonic() + 10
        while sink.stats()["published"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = sink.stats()
    finally:
        sink.close()
        broker.stop()
    assert (st["connected"], st["published"]) == (True, 2)


def test_mqtts_refuses_a_broker_it_cannot_verify(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path, tls=True).start()
    caplog.set_level(logging.INFO, logger="intentd.daemon.output.mqtt")
    sink = MqttSink(parse_target(f"mqtts://127.0.0.1:{broker.port}"), MqttConfig())
    sink.start()  # the system's CAs do not know the self-signed certificate
    try:
        sink.emit(_event(1))
        time.sleep(2.0)
        st = sink.stats()
    finally:
        sink.close()
        broker.stop()
    assert (st["connected"], st["published"], st["waiting"]) == (False, 0, 2)
    assert f"cannot connect to mqtts://127.0.0.1:{broker.port}" in caplog.text
    assert "2 message(s) to mqtts://127.0.0.1" in caplog.text
