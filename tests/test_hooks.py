"""Command hooks: exact argv, environment and stdin; timeouts kill; slow hooks never block;
config errors name the file and line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from intentd.daemon.config import load_config
from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import IntentEvent, LabelScore, SlotScore, to_json_line
from intentd.daemon.output.hooks import HookSettings, HookSink, check_intents
from intentd.daemon.output.sinks import open_sinks

RECORD = """\
import json, os, sys
out = {"argv": sys.argv[1:], "stdin": sys.stdin.read(),
       "env": {k: v for k, v in os.environ.items() if k.startswith("INTENTD_")}}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(out) + "\\n")
"""


def _event(uid: int, intent: str | None = "set_brightness", stream: str = "kitchen"
           ) -> IntentEvent:
    slots = (SlotScore("level", "50", 0.8, "fifty percent"), SlotScore("room", "dining room",
                                                                         0.9, "dining room"))
    return IntentEvent("intent" if intent else "no_match", intent, 0.91234,
                       (LabelScore(intent or "_none", 0.91234),), uid, stream, 1.0, 2.0, 2,
                       10.0, 1714564803.0, "home", slots=slots if intent else (),
                       text="set the dining room light to fifty percent" if intent else "")


def _script(tmp_path: Path, body: str, name: str = "hook.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def _records(path: Path, n: int, timeout_s: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().splitlines()) >= n:
            return [json.loads(x) for x in lines]
        time.sleep(0.02)
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_per_intent_hook_gets_exact_argv_env_and_stdin(tmp_path: Path) -> None:
    rec = _script(tmp_path, RECORD)
    log_file = tmp_path / "runs.jsonl"
    sink = HookSink([("set_brightness", (sys.executable, str(rec), str(log_file), "dim")),
                     ("lights_on", (sys.executable, str(rec), str(tmp_path / "other")))])
    sink.start()
    ev = _event(5)
    sink.emit(ev)
    sink.emit(_event(6, intent=None))  # no_match: no per-intent hook runs
    got = _records(log_file, 1)
    sink.close()
    assert got == [{
        "argv": [str(log_file), "dim"],
        "stdin": to_json_line(ev) + "\n",
        "env": {"INTENTD_TYPE": "intent", "INTENTD_INTENT": "set_brightness",
                "INTENTD_SCORE": "0.9123", "INTENTD_STREAM": "kitchen",
                "INTENTD_UTTERANCE_ID": "5",
                "INTENTD_TEXT": "set the dining room light to fifty percent",
                "INTENTD_SLOT_LEVEL": "50", "INTENTD_SLOT_ROOM": "dining room"}}]
    assert not (tmp_path / "other").exists()
    assert sink.stats() | {"sink": ""} == {"sink": "", "running": 0, "waiting": 0, "ran": 1,
                                           "failed": 0, "timed_out": 0, "dropped": 0}


def test_exec_target_runs_for_every_verdict(tmp_path: Path) -> None:
    rec = _script(tmp_path, "#!" + sys.executable + "\n" + RECORD.replace(
        "sys.argv[1], \"a\"", f"{str(tmp_path / 'runs.jsonl')!r}, \"a\""))
    rec.chmod(0o755)
    [sink] = open_sinks([f"exec:{rec}"])
    sink.emit(_event(1))
    sink.emit(_event(2, intent=None))
    got = _records(tmp_path / "runs.jsonl", 2)
    sink.close()
    assert sorted((g["env"]["INTENTD_TYPE"], g["env"]["INTENTD_INTENT"]) for g in got) == [
        ("intent", "set_brightness"), ("no_match", "")]
    assert all(g["argv"] == [] for g in got)


def test_slow_hook_is_killed_and_events_keep_flowing(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    slow = _script(tmp_path, "import time\ntime.sleep(60)\n", "slow.py")
    rec = _script(tmp_path, RECORD)
    runs = tmp_path / "runs.jsonl"
    sink = HookSink([("set_brightness", (sys.executable, str(slow))),
                     ("lights_on", (sys.executable, str(rec), str(runs)))],
                    HookSettings(timeout_s=1.0, max_running=2, queue_events=10))
    sink.start()
    caplog.set_level(logging.WARNING, logger="intentd.daemon.output.hooks")
    sink.emit(_event(1))  # the slow one takes one runner
    done = threading.Event()

    def producer() -> None:
        for uid in range(2, 6):
            sink.emit(_event(uid, intent="lights_on"))
        done.set()

    threading.Thread(target=producer).start()
    assert done.wait(1.0), "emit blocked behind a slow hook"
    got = _records(runs, 4)
    assert [g["env"]["INTENTD_UTTERANCE_ID"] for g in got] == ["2", "3", "4", "5"]
    deadline = time.monotonic() + 10
    while sink.stats()["timed_out"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close()
    assert sink.stats()["timed_out"] == 1
    assert "still running after 1 s (output.hook_timeout_s); killed" in caplog.text


def test_full_queue_drops_oldest_and_failures_are_logged(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    gate = tmp_path / "gate"
    wait = _script(tmp_path, f"import os, time\nwhile not os.path.exists({str(gate)!r}): "
                   "time.sleep(0.01)\nraise SystemExit('no such light: kitchen')\n")
    sink = HookSink([("set_brightness", (sys.executable, str(wait)))],
                    HookSettings(timeout_s=20, max_running=1, queue_events=2))
    sink.start()
    caplog.set_level(logging.WARNING, logger="intentd.daemon.output.hooks")
    sink.emit(_event(1))
    deadline = time.monotonic() + 5
    while sink.stats()["running"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for uid in range(2, 6):
        sink.emit(_event(uid))
    st = sink.stats()
    assert (st["running"], st["waiting"], st["dropped"]) == (1, 2, 2)
    gate.touch()
    deadline = time.monotonic() + 10
    while sink.stats()["ran"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.close()
    assert sink.stats()["failed"] == 3
    assert "exit status 1: no such light: kitchen" in caplog.text
    assert "dropped the oldest" in caplog.text


def test_missing_program_and_unknown_intent_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hooks.lights_on: program '/nope/lights' is not "
                                          "found or not executable"):
        HookSink([("lights_on", ("/nope/lights",))]).start()
    with pytest.raises(ConfigError, match=r"exec:/nope: program '/nope' is not found"):
        open_sinks(["exec:/nope"])
    with pytest.raises(ConfigError, match=r"hooks.light_on: the model has no intent "
                                          r"'light_on'; did you mean lights_on"):
        check_intents([("light_on", ("true",))], ["lights_on", "weather", "_none"])
    check_intents([("lights_on", ("true",))], ["lights_on", "_none"])


def test_hooks_in_config(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text("hooks:\n  lights_on: [scripts/lights, on, 1]\n"
                        "  weather: /usr/bin/true\noutput:\n  hook_timeout_s: 3\n")
    cfg = load_config(cfg_path)
    assert cfg.hooks == (("lights_on", (str(tmp_path / "scripts/lights"), "on", "1")),
                         ("weather", ("/usr/bin/true",)))
    assert cfg.output.hook_timeout_s == 3.0
    cfg_path.write_text("log_level: INFO\nhooks:\n  lights_on: []\n")
    with pytest.raises(ConfigError, match=rf"{cfg_path}:3: hooks.lights_on = \[\] is invalid"):
        load_config(cfg_path)
    cfg_path.write_text("hooks: [lights_on]\n")
    with pytest.raises(ConfigError, match=rf"{cfg_path}:1: hooks = "):
        load_config(cfg_path)
    cfg_path.write_text("hook:\n  lights_on: [x]\n")
    with pytest.raises(ConfigError, match="did you mean hooks"):
        load_config(cfg_path)
