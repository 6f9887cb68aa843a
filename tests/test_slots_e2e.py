"""A spec with slots, end to end: synth records the slot values, fit trains a compact model
with slot heads, ``intentd`` (a subprocess) reports the exact slot values of a generated
call, and ``intentd-eval`` reports command acceptance."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from intentd.daemon.score import read_events, read_truth, summarize

REPO = Path(__file__).resolve().parents[1]

SLOT_SPEC = """\
intents:
  lights_on:
    - "(turn | switch) on the $room{room} lights"
    - "lights on in the $room{room}"
  set_level:
    - "set the [$room{room}] lights to $level{level}"
    - "dim the [$room{room}] lights to $level{level}"
  weather:
    - "what is the weather [like] (today | tomorrow)"
    - "will it rain (today | tomorrow)"
slots:
  room: [kitchen, bedroom, "(living room):living_room"]
  level: ["(ten percent):10", "(fifty percent | half):50"]
"""


@pytest.fixture(scope="module")
def slot_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slotspec") / "lights.yaml"
    path.write_text(SLOT_SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def slot_data(slot_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from intentd.trainer.synthesis.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("slotdata") / "lights"
    synthesize(slot_spec, out, SynthOptions(per_intent=40, piper_share=0.0, flite_share=0.0,
                                            reject_share=0.0, seed=0, progress=False))
    return out


@pytest.fixture(scope="module")
def slot_model(slot_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit

    out = tmp_path_factory.mktemp("slotmodel") / "lights"
    fit(DataArguments(data=str(slot_data)), ModelArguments(model="compact", head_channels=128),
        TrainArguments(out=str(out), batch_size=32, seed=0))
    return out


def test_synth_metadata_carries_each_utterance_slots(slot_data: Path) -> None:
    with open(slot_data / "train" / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        slots = json.loads(row["slots"] or "{}")
        if row["label"] == "lights_on":
            assert set(slots) == {"room"}
        elif row["label"] == "weather":
            assert slots == {}
        if "half" in row["text"] or "fifty percent" in row["text"]:
            assert slots["level"] == "50"
        if "living room" in row["text"]:
            assert slots["room"] == "living_room"
    spec = json.loads((slot_data / "spec.json").read_text())
    assert spec["intent_slots"] == {"lights_on": ["room"], "set_level": ["level", "room"],
                                    "weather": []}


def test_fit_trains_slot_heads_and_reports_command_acceptance(slot_model: Path) -> None:
    report = json.loads((slot_model / "report.json").read_text())
    assert report["slots"] == {"level": ["10", "50"],
                               "room": ["bedroom", "kitchen", "living_room"]}
    assert report["command_acceptance"] >= 0.9
    assert set(report["slot_accuracy"]) == {"level", "room"}
    config = json.loads((slot_model / "config.json").read_text())
    assert config["intent_slots"] == {"lights_on": ["room"], "set_level": ["level", "room"],
                                      "weather": []}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_daemon_reports_the_slot_values_of_a_generated_call(slot_spec: Path, slot_model: Path,
                                                            tmp_path: Path) -> None:
    from intentd.trainer.synthesis.democall import make_call

    wav, truth_csv = tmp_path / "call.wav", tmp_path / "call.csv"
    make_call(slot_spec, wav, truth_csv, n_utterances=8, seed=0)
    p = subprocess.run([sys.executable, "-m", "intentd.daemon", "--model", str(slot_model),
                        "--input", str(wav), "--no-realtime"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    verdicts = [e for e in events if e["type"] in ("intent", "no_match")]
    truth = read_truth(truth_csv)
    assert len(verdicts) == len(truth) == 8
    for ev, span in zip(verdicts, truth, strict=True):
        assert ev["intent"] == span.intent
        assert {k: v["value"] for k, v in ev["slots"].items()} == span.slots
        assert all(0.5 < v["score"] <= 1.0 for v in ev["slots"].values())
        assert list(ev)[:6] == ["v", "type", "intent", "score", "top", "slots"]
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(p.stdout)
    assert summarize(truth, read_events(events_file))["command_acceptance"] == 1.0


def test_eval_reports_command_acceptance_in_every_condition(slot_model: Path, slot_data: Path,
                                                            tmp_path: Path) -> None:
    from intentd.trainer.evaluation.cli import main

    out = tmp_path / "eval"
    assert main(["--model", str(slot_model), "--data", str(slot_data), "--out", str(out),
                 "--snrs", "clean,12", "--max-utterances", "12", "--per-stream", "6",
                 "--fa-hours", "0"]) == 0
    r: dict[str, Any] = json.loads((out / "report.json").read_text())
    assert r["utterance"]["command_acceptance"] >= 0.8
    for row in r["by_snr"]:
        assert 0.0 <= row["command_acceptance"] <= row["accuracy"]
        assert set(row["slot_accuracy"]) == {"level", "room"}
    md = (out / "report.md").read_text()
    assert "command acceptance" in md and "## Slot accuracy by condition" in md


def test_transformers_pipeline_still_returns_the_intent(slot_model: Path,
                                                        slot_data: Path) -> None:
    import soundfile as sf
    from transformers import pipeline

    from intentd.daemon.model import compact

    compact.register()
    with open(slot_data / "test" / "metadata.csv", newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["label"] == "set_level")
    audio, rate = sf.read(slot_data / "test" / row["file_name"], dtype="float32")
    clf = pipeline("audio-classification", model=str(slot_model), device="cpu")
    top = clf({"raw": audio, "sampling_rate": rate}, top_k=1)[0]
    assert top["label"] == "set_level"


def test_tune_encoder_trains_the_slot_heads_along(slot_model: Path, slot_data: Path,
                                                  tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForAudioClassification

    from intentd.trainer.tuning.tune_encoder import TuneOptions, tune

    out = tmp_path / "tuned"
    tune(slot_model, str(slot_data), out, TuneOptions(layers=1, epochs=1, variants=1,
                                                      crowd_bed_s=8.0, crowd_beds=2))
    before = AutoModelForAudioClassification.from_pretrained(slot_model)
    after = AutoModelForAudioClassification.from_pretrained(out)
    assert after.config.slot_values == before.config.slot_values
    moved = after.slot_heads.classifiers[0].weight - before.slot_heads.classifiers[0].weight
    assert float(torch.abs(moved).detach().max()) > 0
