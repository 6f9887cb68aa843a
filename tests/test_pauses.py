"""Mid-command pauses for demo calls and training data (synth --pause-share,
intentd.trainer.synthesis.pauses)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from intentd.daemon.errors import ConfigError
from intentd.trainer.synthesis import pauses
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.synth import SynthOptions, synthesize
from intentd.trainer.synthesis.synth_plan import plan

SR = 16000


def _fake_speak(text: str) -> np.ndarray:
    """160 silent samples, 100 per letter of audible signal, 80 silent samples."""
    voiced = np.full(100 * len(text.replace(" ", "")), 0.5, dtype=np.float32)
    return np.concatenate([np.zeros(160, np.float32), voiced, np.zeros(80, np.float32)])


def test_speech_bounds_and_trim_are_frame_exact() -> None:
    x = np.zeros(SR, np.float32)
    x[1600:4800] = 0.3  # frames 10..29 (10 ms frames)
    assert pauses.speech_bounds(x, SR) == (1600, 4800)
    assert pauses.trim(x, SR).size == 3200
    assert pauses.speech_bounds(np.zeros(SR, np.float32), SR) == (0, 0)


def test_speak_with_pause_joins_the_audible_parts() -> None:
    out = pauses.speak_with_pause("ab cd ef gh", 2, 0.5, _fake_speak, SR)
    # Each half: 160 silent samples, 400 audible, 80 silent. speech_bounds works in whole
    # 10 ms frames (160 samples): frames 1-3, so the trim keeps 400 audible + 80 silent.
    half = np.concatenate([np.full(400, 0.5, np.float32), np.zeros(80, np.float32)])
    np.testing.assert_array_equal(out, np.concatenate([half, np.zeros(8000, np.float32),
                                                       half]))


def test_speak_with_pause_rejects_a_split_outside_the_text() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pauses.speak_with_pause("one two", 2, 0.5, _fake_speak, SR)


def test_split_at_leaves_two_words_each_side() -> None:
    rng = random.Random(0)
    assert pauses.split_at("turn it on", rng) == 0
    ks = {pauses.split_at("a b c d e f", rng) for _ in range(200)}
    assert ks == {2, 3, 4}


SPEC = """\
intents:
  transfer:
    - "(please | could you) (send | move) $amount to my $account account"
  balance:
    - "what is my $account balance (today | right now)"
slots:
  amount: [ten euros, twenty dollars, fifty pounds]
  account: [savings, checking]
"""


def _spec(tmp_path: Path) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(SPEC, encoding="utf-8")
    return p


def _quiet(**kw: object) -> SynthOptions:
    base = {"per_intent": 10, "piper_share": 0.0, "flite_share": 0.0, "reject_share": 0.0,
            "seed": 3, "jobs": 1, "progress": False}
    base.update(kw)
    return SynthOptions(**base)  # type: ignore[arg-type]


def test_pause_share_plans_pauses_in_training_speech_only(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    plain = plan(spec, _quiet(per_intent=200))
    paused = plan(spec, _quiet(per_intent=200, pause_share=0.5))
    # Only the pause fields differ: texts, voices, splits and seeds stay as they were.
    assert [dataclasses.replace(j, pause_at=0, pause_s=0.0) for j in paused] == plain
    assert all(j.pause_at == 0 and j.pause_s == 0.0 for j in plain)
    train = [j for j in paused if j.split == "train"]
    assert all(j.pause_at == 0 for j in paused if j.split != "train")
    with_pause = [j for j in train if j.pause_at]
    assert 0.4 < len(with_pause) / len(train) < 0.6
    lo, hi = pauses.TRAIN_PAUSE_S
    for j in with_pause:
        assert 2 <= j.pause_at <= len(j.text.split()) - 2
        assert lo <= j.pause_s <= hi


def test_paused_training_utterances_carry_the_planned_gap(tmp_path: Path) -> None:
    # Nothing but the gain, so the gap is digital silence of the planned length.
    opts = _quiet(pause_share=1.0, noise_prob=0.0, reverb_prob=0.0, speed_prob=0.0,
                  telephone_prob=0.0)
    spec_path = _spec(tmp_path)
    synthesize(spec_path, tmp_path / "set", opts)
    jobs = [j for j in plan(load_spec(spec_path), opts) if j.split == "train"]
    assert jobs and all(j.pause_at for j in jobs)
    for j in jobs:
        x, sr = sf.read(str(tmp_path / "set" / "train" / j.file_name), dtype="float32")
        s, e = pauses.speech_bounds(x, sr)
        silent = np.concatenate([[False], x[s:e] == 0.0, [False]])
        edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
        longest = int(np.max(edges[1::2] - edges[::2]))
        # The gap, plus the few silent samples eSpeak leaves at the halves' trimmed edges.
        assert int(j.pause_s * sr) <= longest < int(j.pause_s * sr) + 0.05 * sr


def test_pause_share_outside_0_1_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"--pause-share must be in \[0, 1\], got 1.5"):
        _quiet(pause_share=1.5).validate()
