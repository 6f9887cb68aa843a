"""Synthetic data set generation (intentd.trainer.synthesis.synth) and the demo call
(intentd.trainer.synthesis.democall)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.output.events import REJECT_LABEL
from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis import negatives
from intentd.trainer.synthesis.democall import make_call
from intentd.trainer.synthesis.pauses import speech_bounds
from intentd.trainer.synthesis.synth import SynthOptions, split_speakers, synthesize
from intentd.trainer.synthesis.synth_cli import add_synth_arguments, options_from_args

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
intents:
  lights_on:
    - "[please] (turn | switch) on the $room light[s]"
  lights_off:
    - "[please] (turn | switch) off the $room light[s]"
  balance:
    - "what is my [$account] balance"
slots:
  room: [kitchen, bedroom, living room]
  account: [checking, savings]
"""


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    p.write_text(TINY, encoding="utf-8")
    return p


def _opts(**kw: object) -> SynthOptions:
    base = {"per_intent": 8, "piper_share": 0.25, "flite_share": 0.0, "seed": 7, "jobs": 1,
            "progress": False}
    base.update(kw)
    return SynthOptions(**base)  # type: ignore[arg-type]


def _read(d: Path, split: str) -> list[dict[str, str]]:
    with open(d / split / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tiny_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    synthesize(tiny_spec, out, _opts())
    return out


def test_layout_metadata_and_audio_format(tiny_set: Path) -> None:
    train, test = _read(tiny_set, "train"), _read(tiny_set, "test")
    assert list(train[0]) == ["file_name", "label", "text", "voice", "slots"]
    assert {r["slots"] for r in train} == {"{}"}  # the tiny spec fills no slot
    # 8 per intent and 8 for the rejection class: 2 piper (train) + 6 espeak of which
    # round(6 * 0.2) = 1 test.
    assert len(train) == 4 * 7 and len(test) == 4 * 1
    meta = json.loads((tiny_set / "spec.json").read_text())
    assert meta["labels"] == ["lights_on", "lights_off", "balance", REJECT_LABEL]
    assert meta["counts"] == {"train": 28, "test": 4, "noisy": 4}
    for split, rows in (("train", train), ("test", test)):
        for r in rows:
            info = sf.info(str(tiny_set / split / r["file_name"]))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.duration > 0.5
            assert r["label"] in meta["labels"]
    assert sum(r["voice"] == "piper:joe" for r in train) == 8


def test_test_split_is_clean_and_noisy_split_mirrors_it(tmp_path: Path, tiny_spec: Path) -> None:
    # Noise on every utterance, so the noisy copy must differ from the clean one everywhere.
    out = tmp_path / "set"
    synthesize(tiny_spec, out, _opts(noise_prob=1.0, snr_db=(10.0, 10.0), per_intent=4,
                                     piper_share=0.0))
    test, noisy = _read(out, "test"), _read(out, "noisy")
    assert test == noisy and len(test) == 4  # same files, labels, texts and voices
    for r in test:
        clean, sr = sf.read(str(out / "test" / r["file_name"]), dtype="float32")
        dirty, _ = sf.read(str(out / "noisy" / r["file_name"]), dtype="float32")
        lead = int(0.05 * sr)  # synth pads >= 50 ms of room before the speech
        assert not clean[:lead].any(), "clean test audio must not carry noise"
        assert np.abs(dirty[:lead]).max() > 1e-3, "noisy copy must carry the noise"
    # The training split keeps its augmentation.
    train = _read(out, "train")
    assert all(
        np.abs(sf.read(str(out / "train" / r["file_name"]), dtype="float32")[0][:800]).max()
        > 1e-3 for r in train)


def test_rejection_class_kinds_and_sizes(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "rej"
    summary = synthesize(tiny_spec, out, _opts(per_intent=5, piper_share=0.0,
                                               reject_share=2.0))
    assert summary.labels == ("lights_on", "lights_off", "balance", REJECT_LABEL)
    rows = {s: [r for r in _read(out, s) if r["label"] == REJECT_LABEL]
            for s in ("train", "test")}
    # 10 rejection utterances: 2 test, 8 train; kinds by fixed shares 0.5/0.35/0.15.
    assert [r["text"] == "<babble>" for r in rows["train"]].count(True) == 3
    assert [r["text"] == "<noise>" for r in rows["train"]].count(True) == 1
    assert [r["voice"].startswith("espeak:") for r in rows["train"]].count(True) == 4
    assert [r["voice"].split(":")[0] for r in rows["test"]] == ["espeak", "babble"]
    for r in rows["train"]:
        x, sr = sf.read(str(out / "train" / r["file_name"]), dtype="float32")
        assert x.size / sr > 0.9 and np.abs(x).max() > 1e-3
    # 0 turns the class off.
    off = synthesize(tiny_spec, tmp_path / "off", _opts(per_intent=4, piper_share=0.0,
                                                         reject_share=0.0))
    assert off.labels == ("lights_on", "lights_off", "balance")
    with pytest.raises(ConfigError, match="--reject-share"):
        SynthOptions(reject_share=-1.0).validate()


def test_cut_commands_are_pieces_that_cannot_be_commands(tiny_spec: Path,
                                                          tmp_path: Path) -> None:
    import random

    from intentd.trainer.synthesis.pauses import cut

    commands = ["please turn on the kitchen light", "turn on the kitchen light",
                "what is my balance", "hi"]
    # the first has a command for an end, the last is too short to cut
    assert set(negatives.cut_commands(commands, 20, random.Random(0))) == {
        "turn on the kitchen light", "what is my balance"}
    assert negatives.cut_commands(["hi"], 5, random.Random(0)) == []
    # a cut lies between 20% and 80% of the audible part; head + tail are all of it
    audio = np.concatenate([np.zeros(1600), np.sin(np.arange(16000) / 3.0), np.zeros(1600)])
    audio[1600 + 8000: 1600 + 8320] = 0.0  # a gap between two words
    head, tail = (cut(audio.astype(np.float32), part, random.Random(1)) for part in
                  ("head", "tail"))
    assert 0.2 * 16000 <= head.size <= 0.8 * 16000 and head.size + tail.size == 16000
    with pytest.raises(ValueError, match="head or tail"):
        cut(audio, "middle", random.Random(1))
    # in a data set: rejection utterances that are the head or the tail of a command
    out = tmp_path / "cut"
    synthesize(tiny_spec, out, _opts(per_intent=6, piper_share=0.0, reject_share=2.0,
                                     cut_share=0.5))
    rows = [r for s in ("train", "test") for r in _read(out, s) if r["label"] == REJECT_LABEL]
    pieces = [r for r in rows if r["text"].startswith(("<head> ", "<tail> "))]
    # never "please turn on ...": its end is a command of the spec
    said = [r["text"].split(" ", 1)[1] for r in pieces]
    assert said and not any(t.startswith("please") for t in said), said
    with pytest.raises(ConfigError, match="--cut-share"):
        SynthOptions(cut_share=1.5).validate()


def test_negative_kinds_follow_fixed_shares() -> None:
    kinds = [negatives.kind_of(i, 10) for i in range(10)]
    assert kinds == ["speech"] * 5 + ["babble"] * 3 + ["noise"] * 2
    import random

    texts = negatives.sentences(60, random.Random(0))
    assert len(texts) == 60 and len(set(texts)) > 50
    assert all(t and t == t.strip().lower() for t in texts)


def test_split_is_voice_disjoint(tiny_set: Path) -> None:
    # Rejection-class babble and noise have no single voice (babble talkers come from the
    # split's own pool).
    train_voices = {r["voice"] for r in _read(tiny_set, "train")} - {"babble", "noise"}
    test_voices = {r["voice"] for r in _read(tiny_set, "test")} - {"babble", "noise"}
    assert train_voices.isdisjoint(test_voices)
    assert all(v.startswith("espeak:") for v in test_voices)
    tr, te = split_speakers(7, 0.2)
    assert {s.variant for s in tr}.isdisjoint({s.variant for s in te})
    assert {s.voice_id for s in te} >= test_voices


def test_accent_restricted_split_keeps_kinds_apart() -> None:
    tr, te = split_speakers(7, 0.2, train_accents=("en-us", "en-us-nyc"),
                            test_accents=("en-gb-scotland",))
    assert {s.accent for s in tr} == {"en-us", "en-us-nyc"}
    assert {s.accent for s in te} == {"en-gb-scotland"}
    assert {s.variant for s in tr}.isdisjoint({s.variant for s in te})
    full_tr, full_te = split_speakers(7, 0.2)
    # Restricting accents never changes which variants are held out.
    assert {s.variant for s in te} == {s.variant for s in full_te}
    assert {s.variant for s in tr} == {s.variant for s in full_tr}


def test_unknown_accent_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--test-accents: unknown accent 'en-mars'"):
        SynthOptions(test_accents=("en-mars",)).validate()


def test_deterministic_across_runs_and_jobs(tiny_spec: Path, tiny_set: Path,
                                            tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(tiny_spec, again, _opts(jobs=2))
    assert _snapshot(again) == _snapshot(tiny_set)


def test_other_seed_differs(tiny_spec: Path, tiny_set: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthesize(tiny_spec, other, _opts(seed=8, piper_share=0.0))
    assert _snapshot(other) != _snapshot(tiny_set)


def test_refuses_non_empty_out_without_force(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty; pass --force"):
        synthesize(tiny_spec, out, _opts(piper_share=0.0))
    synthesize(tiny_spec, out, _opts(piper_share=0.0, per_intent=3), force=True)
    assert (out / "keep.txt").read_text() == "x"
    assert (out / "spec.json").is_file()


def test_cli_arguments_map_to_options(tiny_spec: Path) -> None:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    args = parser.parse_args([str(tiny_spec), "--out", "x", "--seed", "3", "--per-intent",
                              "50", "--snr-db", "0", "10", "--jobs", "1", "--piper-share",
                              "0", "--flite-share", "0.3", "--gen-timbres", "12",
                              "--pause-share", "0.25"])
    o = options_from_args(args)
    assert (o.seed, o.per_intent, o.snr_db, o.jobs, o.piper_share, o.flite_share,
            o.gen_timbres, o.pause_share) == (3, 50, (0.0, 10.0), 1, 0.0, 0.3, 12, 0.25)
    assert options_from_args(parser.parse_args([str(tiny_spec), "--out", "x"])).flite_share \
        == SynthOptions().flite_share == 0.15


def test_noise_kinds_option_weights_and_validates(tiny_spec: Path) -> None:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    o = options_from_args(parser.parse_args([str(tiny_spec), "--out", "x", "--noise-kinds",
                                             "hum, hum,brown"]))
    assert o.noise_kinds == ("hum", "hum", "brown")
    assert o.augment_options().noise_kinds == ("hum", "hum", "brown")
    assert options_from_args(parser.parse_args([str(tiny_spec), "--out", "x"])).noise_kinds \
        == aug.TRAIN_NOISE_KINDS
    with pytest.raises(ConfigError, match="--noise-kinds: unknown kind 'rain'; choose from"):
        SynthOptions(noise_kinds=("pink", "rain")).validate()
    with pytest.raises(ConfigError, match="--noise-kinds is empty"):
        SynthOptions(noise_kinds=()).validate()
    SynthOptions(noise_kinds=(), noise_prob=0.0).validate()  # no noise asked for: fine
    # Only the listed kinds are mixed in, a repeated one more often.
    x = np.sin(np.arange(8000) / 8.0).astype(np.float32) * 0.3
    opts = aug.AugmentOptions(noise_prob=1.0, noise_kinds=("hum", "hum", "brown"))
    kinds = [aug.augment(x, np.random.default_rng(i), opts)[1] for i in range(60)]
    drawn = [s.split("@")[0] for steps in kinds for s in steps if "@" in s]
    assert len(drawn) == 60 and set(drawn) == {"hum", "brown"}
    assert drawn.count("hum") > drawn.count("brown")


def test_cli_bad_spec_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("intents:\n  a:\n    - call $nobody\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "intentd.trainer.cli", "synth", str(bad), "--out",
         str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"intentd-train: error: {bad}:3: undefined slot $nobody in intent 'a' "
                     "template 'call $nobody'"]


def test_mix_at_snr_hits_the_target() -> None:
    rng = np.random.default_rng(0)
    speech = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3
    for snr in (0.0, 10.0, 20.0):
        mixed = aug.mix_at_snr(speech, aug.pink_noise(8000, rng), snr, rng)
        noise = mixed - speech
        measured = 10 * np.log10(aug.active_power(speech) / np.mean(noise.astype(np.float64)
                                                                     ** 2))
        assert abs(measured - snr) < 0.01


@pytest.mark.parametrize(("kind", "slope"), [("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_has_its_spectral_slope_at_any_length(kind: str, slope: float) -> None:
    # 48_017 is prime: the generator draws a longer, FFT-friendly stretch and cuts it.
    n = 48_017
    x = aug.make_noise(kind, n, np.random.default_rng(4))
    assert x.shape == (n,) and x.dtype == np.float32
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, abs=1e-4)
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(n, 1 / 16000)
    band = (f > 50) & (f < 5000)
    fitted = np.polyfit(np.log10(f[band]), np.log10(power[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)


def test_telephone_band_keeps_300_to_3400_hz() -> None:
    rate, n = 16000, 16001  # an odd length, zero-padded inside
    t = np.arange(n) / rate
    for f_hz, kept in ((1000.0, True), (150.0, False), (6000.0, False)):
        tone = (0.3 * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)
        out = aug._band_limit(tone, rate, 300.0, 3400.0)
        assert out.shape == tone.shape
        ratio = np.sqrt(np.mean(out[2000:-2000] ** 2) / np.mean(tone[2000:-2000] ** 2))
        assert ratio == pytest.approx(1.0, abs=0.02) if kept else ratio < 0.02


def test_mulaw_round_trip_and_telephone_length() -> None:
    x = np.linspace(-1, 1, 1001).astype(np.float32)
    y = aug.mulaw_decode(aug.mulaw_encode(x))
    assert np.max(np.abs(y - x)) < 0.025  # 8-bit μ-law step near full scale
    a = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    assert aug.telephone(a).shape == a.shape


def test_telephone_is_causal_and_band_limited() -> None:
    # A burst after 2 s of silence: a non-causal (FFT-mask) band-pass put ringing ahead of
    # it, which the VAD took for the start of speech ~0.5 s early on 8 kHz calls.
    sr = 16000
    t = np.arange(sr) / sr
    burst = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    x = np.concatenate([np.zeros(2 * sr, np.float32), burst])
    y = aug.telephone(x, sr)
    # Only the resamplers' short linear-phase kernels may reach ahead: nothing 20 ms before.
    ahead = y[: 2 * sr - sr // 50]
    assert float(np.sqrt(np.mean(ahead ** 2))) < 1e-4
    # 1 kHz passes within 1 dB; 100 Hz (below the 300 Hz band edge) loses at least 20 dB.
    mid = slice(2 * sr + sr // 4, 3 * sr - sr // 4)
    assert abs(20 * np.log10(np.std(y[mid]) / np.std(x[mid]))) < 1.0
    low = (0.5 * np.sin(2 * np.pi * 100.0 * t)).astype(np.float32)
    y_low = aug.telephone(low, sr)
    assert 20 * np.log10(np.std(y_low[sr // 4: -sr // 4]) / np.std(low)) < -20.0


def test_democall_truth_matches_audio(tiny_spec: Path, tmp_path: Path) -> None:
    wav, truth = tmp_path / "call.wav", tmp_path / "call.csv"
    s = make_call(tiny_spec, wav, truth, n_utterances=4, seed=7, pause_prob=0.5,
                  snr_db=(40.0, 40.0))
    audio, sr = sf.read(str(wav), dtype="float32")
    assert sr == 16000 and audio.ndim == 1
    with open(truth, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == s.n_utterances == 4
    prev_end = 0.0
    for r in rows:
        start, end = float(r["start_s"]), float(r["end_s"])
        assert start - prev_end >= 1.5 - 1e-3 and end > start
        seg = audio[int(start * sr) : int(end * sr)]
        b0, b1 = speech_bounds(seg, sr)
        assert b0 <= 0.02 * sr and seg.size - b1 <= 0.02 * sr  # speech fills the span
        prev_end = end
    assert s.duration_s == pytest.approx(audio.size / sr, abs=1e-3)


def test_democall_noise_kind_changes_only_the_background(tiny_spec: Path,
                                                         tmp_path: Path) -> None:
    drawn = make_call(tiny_spec, tmp_path / "a.wav", tmp_path / "a.csv", n_utterances=3, seed=7)
    other = next(k for k in ("pink", "babble") if k != drawn.noise_kind)
    fixed = make_call(tiny_spec, tmp_path / "b.wav", tmp_path / "b.csv", n_utterances=3, seed=7,
                      noise_kind=other)
    assert fixed.noise_kind == other
    assert 15.0 <= fixed.snr_db <= 25.0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    a, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    b, _ = sf.read(str(tmp_path / "b.wav"), dtype="float32")
    assert a.shape == b.shape and not np.array_equal(a, b)
    with pytest.raises(ConfigError, match="--noise-kind must be one of"):
        make_call(tiny_spec, tmp_path / "c.wav", tmp_path / "c.csv", noise_kind="rain")


def test_democall_voice_seed_picks_the_voice_split_only(tiny_spec: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import intentd.trainer.synthesis.democall as dc

    spoken: list[str] = []
    real = dc._utterance

    def record(text: str, speaker, *args, **kw):  # type: ignore[no-untyped-def]
        spoken.append(speaker.voice_id)
        return real(text, speaker, *args, **kw)

    monkeypatch.setattr(dc, "_utterance", record)
    held_out = {s.voice_id for s in split_speakers(7, 0.2)[1]}
    make_call(tiny_spec, tmp_path / "a.wav", tmp_path / "a.csv", n_utterances=6, seed=3,
              voice_seed=7)
    assert len(spoken) == 6 and set(spoken) <= held_out
    spoken.clear()
    make_call(tiny_spec, tmp_path / "b.wav", tmp_path / "b.csv", n_utterances=6, seed=3)
    assert set(spoken) <= {s.voice_id for s in split_speakers(3, 0.2)[1]}
