"""End to end: segmentation by the model, through the real daemon process.

A model with the rejection class (cut commands among it) is trained on the tiny spec; held-out
voices say two commands half a second apart (one utterance for the VAD's 1.3 s hangover) and
a command with a 0.7 s pause inside; ``intentd`` runs on the recording. The two commands
get an event each (answered early, or split when early answers are off), the hesitant
command one event over its whole span, and the events say how they ended.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SR = 16000
# (intent, words): two commands back to back, then one said with a pause after its third word
TWO = (("weather", "what is the weather like tomorrow"), ("play_music", "play some jazz music"))
HESITANT = ("lights_on", "switch on the", "kitchen lights")


@pytest.fixture(scope="module")
def reject_model(tiny_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact model of the tiny spec with the rejection class (out-of-domain speech,
    babble, noise and cut commands): only such a model can say "no command yet". A model
    this small needs the cut commands: without them it answers "switch on the" as
    play_music."""
    from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit
    from intentd.trainer.synthesis.synth import SynthOptions, synthesize

    work = tmp_path_factory.mktemp("reject_model")
    synthesize(tiny_spec, work / "data", SynthOptions(
        per_intent=60, piper_share=0.0, flite_share=0.0, reject_share=1.0, cut_share=0.3,
        seed=0, progress=False))
    fit(DataArguments(data=str(work / "data")),
        ModelArguments(model="compact", head_channels=128),
        TrainArguments(out=str(work / "model"), batch_size=32, seed=0))
    return work / "model"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Held-out voices (the fixture's synth seed 0 never trained on them): two commands
    0.5 s apart, 3 s of silence, a command with a 0.7 s pause, 3 s of silence."""
    from intentd.trainer.synthesis import tts_espeak
    from intentd.trainer.synthesis.pauses import trim
    from intentd.trainer.synthesis.synth_plan import split_speakers

    _, test_voices = split_speakers(0, 0.2)
    voice = test_voices[0]

    def say(text: str) -> np.ndarray:
        return trim(tts_espeak.speak(text, voice, random.Random(1), SR))

    def gap(s: float) -> np.ndarray:
        return np.zeros(int(s * SR), np.float32)

    pieces, truth, pos = [gap(1.0)], [], SR
    for (intent, text), after in zip(TWO, (0.5, 3.0), strict=True):
        audio = say(text)
        truth.append({"intent": intent, "start_s": pos / SR, "end_s": (pos + audio.size) / SR})
        pieces += [audio, gap(after)]
        pos += audio.size + int(after * SR)
    intent, head, tail = HESITANT
    a, b = say(head), say(tail)
    truth.append({"intent": intent, "start_s": pos / SR,
                  "end_s": (pos + a.size + int(0.7 * SR) + b.size) / SR})
    pieces += [a, gap(0.7), b, gap(3.0)]
    audio = np.concatenate(pieces)
    audio += np.random.default_rng(0).normal(0, 1e-3, audio.size).astype(np.float32)
    path = tmp_path_factory.mktemp("recording") / "call.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path, truth


def _run(model: Path, wav: Path, work: Path, **segmentation: object) -> list[dict[str, Any]]:
    config = work / "config.yaml"
    config.write_text("segmentation:\n" + "".join(f"  {k}: {v}\n"
                                                  for k, v in segmentation.items()))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "intentd.daemon", "--config", str(config),
                          "--model", str(model), "--input", str(wav), "--no-realtime"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [e for e in map(json.loads, out.stdout.splitlines())
            if e["type"] in ("intent", "no_match")]


def _summary(events: list[dict[str, Any]], truth: list[dict[str, Any]]) -> list[tuple]:
    """(intent, end, start error, end error) per event, errors in whole 10 ms."""
    rows = []
    for e in events:
        t = max(truth, key=lambda t: min(t["end_s"], e["end_s"])
                - max(t["start_s"], e["start_s"]))
        rows.append((e["intent"], e["end"], abs(e["start_s"] - t["start_s"]) <= 0.15,
                     abs(e["end_s"] - t["end_s"]) <= 0.15))
    return rows


def test_back_to_back_commands_apart_and_a_hesitant_command_whole(
        reject_model: Path, recording: tuple[Path, list[dict[str, Any]]],
        tmp_path: Path) -> None:
    wav, truth = recording
    events = _run(reject_model, wav, tmp_path)
    assert _summary(events, truth) == [
        ("weather", "early", True, True), ("play_music", "early", True, True),
        ("lights_on", "early", True, True)]
    # the speaker stops -> the event: the early mark (0.4 s) and a frame or two, not 1.3 s
    for e, t in zip(events, truth, strict=True):
        assert 0.35 <= e["decided_s"] - t["end_s"] <= 0.6, (e, t)
    ids = [e["utterance_id"] for e in events]
    assert ids == sorted(set(ids))


def test_without_early_answers_the_pause_between_two_commands_is_split(
        reject_model: Path, recording: tuple[Path, list[dict[str, Any]]],
        tmp_path: Path) -> None:
    wav, truth = recording
    events = _run(reject_model, wav, tmp_path, early_after_ms=0)
    assert _summary(events, truth) == [
        ("weather", "split", True, True), ("play_music", "silence", True, True),
        ("lights_on", "silence", True, True)]


def test_silence_alone_joins_the_two_commands(
        reject_model: Path, recording: tuple[Path, list[dict[str, Any]]],
        tmp_path: Path) -> None:
    wav, truth = recording
    events = _run(reject_model, wav, tmp_path, mode="silence")
    assert [(e["end"], round(e["start_s"], 1) <= truth[0]["start_s"] + 0.15,
             e["end_s"] >= truth[1]["end_s"] - 0.15) for e in events[:1]] == [
        ("silence", True, True)]
    assert len(events) == 2
