"""End to end: ``intentd`` on a generated call publishes to a real mosquitto broker (Rhasspy
Hermes topics) and runs command hooks, while the broker goes away mid-call and comes back.

Exactly one Hermes message per command, in the order of the daemon's own stdout verdicts,
none lost and none repeated; the exec: target runs once per verdict and the per-intent hook
once per verdict of its intent, each with the verdict's environment.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, Subscriber

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_COMMANDS = 8

RECORD = """#!{python}
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.startswith("INTENTD_")}}
with open({out!r}, "a") as f:
    event = json.loads(sys.stdin.read())
    f.write(json.dumps({{"argv": sys.argv[1:], "env": env, "event": event}}) + "\\n")
"""


def _script(path: Path, out: Path) -> Path:
    path.write_text(RECORD.format(python=sys.executable, out=str(out)))
    path.chmod(0o755)
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory, tiny_spec: Any) -> dict[str, Path]:
    from intentd.trainer.synthesis.democall import make_call

    d = tmp_path_factory.mktemp("ha_call")
    make_call(tiny_spec, d / "call.wav", d / "call.csv", n_utterances=N_COMMANDS, seed=21)
    return {"wav": d / "call.wav", "truth": d / "call.csv"}


def test_mqtt_and_hooks_through_a_broker_outage(call: dict[str, Path], compact_model: Any,
                                                tmp_path: Path) -> None:
    state = tmp_path / "broker_state"
    state.mkdir()
    broker = Broker(state).start()
    sub = Subscriber(broker.port, ("hermes/#",))
    all_runs, light_runs = tmp_path / "all.jsonl", tmp_path / "lights.jsonl"
    every = _script(tmp_path / "every_verdict", all_runs)
    lights = _script(tmp_path / "lights", light_runs)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"output:\n  targets: [stdout, 'mqtt://127.0.0.1:{broker.port}', 'exec:{every}']\n"
        f"mqtt:\n  reconnect_max_s: 1\nhooks:\n  lights_on: [{lights}, on]\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "intentd.daemon", "--config", str(cfg),
                             "--model", str(compact_model), "--input", str(call["wav"])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Mid-call: the broker stops once three commands went through, for 3 s.
        assert len(sub.wait_for(3, 120)) >= 3, "no Hermes messages before the outage"
        broker.stop()
        time.sleep(3.0)
        broker.start()
        out, err = proc.communicate(timeout=300)
        got = sub.wait_for(N_COMMANDS, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
        broker.stop()
    assert proc.returncode == 0, err[-3000:]
    verdicts = [e for e in map(json.loads, out.splitlines())
                if e["type"] in ("intent", "no_match")]
    with call["truth"].open(newline="") as f:
        truth = [r["intent"] for r in csv.DictReader(f)]
    assert len(verdicts) == len(truth) == N_COMMANDS, err[-3000:]
    right = sum(v["intent"] == t for v, t in zip(verdicts, truth, strict=True))
    assert right >= 0.9 * N_COMMANDS, (verdicts, truth)
    assert f"mqtt: lost mqtt://127.0.0.1:{broker.port}" in err

    # MQTT: one message per verdict, in the daemon's order, nothing lost or repeated.
    ids = [f"{v['stream']}-{v['utterance_id']}" for v in verdicts]
    assert [p["id"] for _, p in got] == ids, (got, ids)
    for (topic, payload), v in zip(got, verdicts, strict=True):
        assert payload["siteId"] == v["stream"] == "call"
        if v["type"] == "intent":
            assert topic == f"hermes/intent/{v['intent']}"
            assert payload["intent"] == {"intentName": v["intent"],
                                         "confidenceScore": v["score"]}
            assert payload["input"] == payload["rawInput"] == v["text"] != ""
        else:
            assert topic == "hermes/nlu/intentNotRecognized"

    # Hooks: exec: once per verdict, the per-intent hook once per lights_on verdict.
    runs = sorted(_jsonl(all_runs), key=lambda r: int(r["env"]["INTENTD_UTTERANCE_ID"]))
    assert [r["event"] for r in runs] == verdicts
    for r, v in zip(runs, verdicts, strict=True):
        assert r["argv"] == []
        assert r["env"]["INTENTD_INTENT"] == (v["intent"] or "")
        assert r["env"]["INTENTD_STREAM"] == "call"
        assert r["env"]["INTENTD_SCORE"] == f"{v['score']:.4f}"
    lit = [v for v in verdicts if v["intent"] == "lights_on"]
    assert lit, "the call has no lights_on command"
    assert sorted(r["env"]["INTENTD_UTTERANCE_ID"] for r in _jsonl(light_runs)) == sorted(
        str(v["utterance_id"]) for v in lit)
    assert all(r["argv"] == ["on"] for r in _jsonl(light_runs))
