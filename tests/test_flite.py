"""CMU flite voices for training data and their place in synth's plan
(intentd.trainer.synthesis.tts_flite)."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.output.events import REJECT_LABEL
from intentd.trainer.synthesis import tts_flite
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.synth import SynthOptions, synthesize
from intentd.trainer.synthesis.synth_plan import plan

SR = 16000
TEXT = "please check the balance of my savings account today"


def _median_f0_hz(x: np.ndarray) -> float:
    """Autocorrelation pitch of the loud 40 ms frames (70-400 Hz)."""
    frame = int(0.04 * SR)
    f0 = []
    for i in range(0, x.size - frame, frame // 2):
        s = x[i : i + frame] - x[i : i + frame].mean()
        if np.sqrt(np.mean(s**2)) < 0.2 * np.sqrt(np.mean(x**2)):
            continue
        ac = np.correlate(s, s, "full")[frame - 1 :]
        lo, hi = SR // 400, SR // 70
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.3 * ac[0]:
            f0.append(SR / k)
    return float(np.median(f0))


def test_speak_is_deterministic_and_follows_pitch_and_rate() -> None:
    low = tts_flite.speak(TEXT, tts_flite.FliteSpeaker("slt", 140.0, 1.0), SR)
    assert low.dtype == np.float32 and 1.5 * SR < low.size < 6 * SR
    assert 0.05 < np.abs(low).max() <= 1.0
    again = tts_flite.speak(TEXT, tts_flite.FliteSpeaker("slt", 140.0, 1.0), SR)
    np.testing.assert_array_equal(low, again)
    high = tts_flite.speak(TEXT, tts_flite.FliteSpeaker("slt", 230.0, 1.0), SR)
    assert _median_f0_hz(low) == pytest.approx(140.0, rel=0.1)
    assert _median_f0_hz(high) == pytest.approx(230.0, rel=0.1)
    slow = tts_flite.speak(TEXT, tts_flite.FliteSpeaker("slt", 140.0, 1.25), SR)
    assert slow.size / low.size == pytest.approx(1.25, abs=0.06)


def test_every_voice_speaks() -> None:
    sps = tts_flite.speakers(random.Random(1), len(tts_flite.VOICES))
    assert {s.voice for s in sps} == {v for v, _f0 in tts_flite.VOICES}
    for sp in sps:
        x = tts_flite.speak("turn on the kitchen light", sp, SR)
        assert x.size > SR // 2 and np.abs(x).max() > 0.05, sp


def test_speakers_cycle_voices_with_varied_habits() -> None:
    sps = tts_flite.speakers(random.Random(3), 6, start=2)
    assert [s.voice for s in sps] == ["rms", "kal16", "slt", "awb", "rms", "kal16"]
    for s in sps:
        own = dict(tts_flite.VOICES)[s.voice]
        assert (s.pitch_hz == 0.0) if own == 0 else (0.8 * own <= s.pitch_hz <= 1.2 * own)
        assert 0.85 <= s.stretch <= 1.25
    assert len({s.stretch for s in sps}) == 6
    assert sps[0].voice_id == "flite:rms"


def test_plan_puts_flite_in_train_only_and_spreads_voices(tiny_spec: Path) -> None:
    spec = load_spec(tiny_spec)
    jobs = plan(spec, SynthOptions(per_intent=8, piper_share=0.25, flite_share=0.25, seed=7))
    by_label: dict[str, Counter[str]] = {}
    for j in jobs:
        by_label.setdefault(j.label, Counter())[f"{j.engine}/{j.split}"] += 1
    for label in ("lights_on", "weather", "play_music"):  # conftest's tiny_spec
        # 2 piper + 2 flite, then 4 eSpeak of which round(4 * 0.2) = 1 test.
        assert by_label[label] == Counter({"piper/train": 2, "flite/train": 2,
                                           "espeak/train": 3, "espeak/test": 1})
    # The rejection class too: its flite utterances are out-of-domain sentences.
    assert by_label[REJECT_LABEL]["flite/train"] == 2
    assert all(not j.text.startswith("<") for j in jobs if j.engine == "flite")
    voices = [j.speaker.voice for j in jobs if isinstance(j.speaker, tts_flite.FliteSpeaker)]
    assert voices == ["slt", "awb", "rms", "kal16", "slt", "awb", "rms", "kal16"]
    # At share 0 there are no flite jobs (and the plan draws nothing for them, so the
    # eSpeak and Piper jobs are those of a plan made before flite existed).
    assert [j for j in plan(spec, SynthOptions(per_intent=8, piper_share=0.25,
                                                flite_share=0.0, seed=7))
            if j.engine == "flite"] == []


def test_synthesized_set_carries_flite_utterances(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    summary = synthesize(tiny_spec, out, SynthOptions(per_intent=5, piper_share=0.0,
                                                      flite_share=0.4, reject_share=0.0,
                                                      seed=7, jobs=1, progress=False))
    with open(out / "train" / "metadata.csv", newline="", encoding="utf-8") as f:
        train = list(csv.DictReader(f))
    with open(out / "test" / "metadata.csv", newline="", encoding="utf-8") as f:
        test = list(csv.DictReader(f))
    assert sorted(r["voice"] for r in train if r["voice"].startswith("flite:")) == sorted(
        ["flite:slt", "flite:awb", "flite:rms", "flite:kal16", "flite:slt", "flite:awb"])
    assert not any(r["voice"].startswith("flite:") for r in test)
    assert summary.n_train == 3 * 4 and summary.n_test == 3 * 1


def test_missing_flite_and_bad_shares_are_clear_errors(tiny_spec: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"--flite-share 0\.5 leaves too few eSpeak"):
        SynthOptions(piper_share=0.5, flite_share=0.5).validate()
    with pytest.raises(ConfigError, match="--flite-share must be in"):
        SynthOptions(flite_share=-0.1).validate()
    monkeypatch.setattr(tts_flite.shutil, "which", lambda _name: None)
    with pytest.raises(DataError, match="apt-get install flite, or pass --flite-share 0"):
        synthesize(tiny_spec, tmp_path / "none", SynthOptions(
            per_intent=4, piper_share=0.0, flite_share=0.5, jobs=1, progress=False))
    assert not (tmp_path / "none").exists()  # nothing half-written
    with pytest.raises(DataError, match="flite is not installed"):
        tts_flite.speak(TEXT, tts_flite.FliteSpeaker("slt", 0.0, 1.0), SR)
