"""Generated eSpeak timbres : files, overlay, speech, split
(intentd.trainer.synthesis.espeak_timbres)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from intentd.daemon.errors import ConfigError, DataError
from intentd.trainer.synthesis import espeak_timbres, tts_espeak
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.synth import SynthOptions
from intentd.trainer.synthesis.synth_plan import plan, split_speakers

SR = 16000
TEXT = "please check the balance of my savings account today"


def _spectral_centroid_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float((spec * f).sum() / spec.sum())


def test_variant_text_is_a_pure_function_of_the_name() -> None:
    a = espeak_timbres.variant_text(espeak_timbres.name(7, 3))
    assert a == espeak_timbres.variant_text("intentd-gen-7-3")
    assert a != espeak_timbres.variant_text(espeak_timbres.name(7, 4))
    assert a != espeak_timbres.variant_text(espeak_timbres.name(8, 3))
    keys = [line.split()[0] for line in a.splitlines()]
    assert keys[:4] == ["language", "name", "gender", "pitch"]
    assert keys.count("formant") == 9 and "breath" not in keys  # breath is not reproducible
    base, top = (int(v) for v in a.splitlines()[3].split()[1:])
    assert 65 <= base < top <= 360


def test_names() -> None:
    assert espeak_timbres.is_generated("intentd-gen-0-12")
    assert not espeak_timbres.is_generated("f3")
    assert not espeak_timbres.is_generated("intentd-gen-x-1")
    with pytest.raises(DataError, match="not a generated"):
        espeak_timbres.variant_text("m3")


def test_overlay_mirrors_the_shipped_data_and_takes_generated_files() -> None:
    shipped = tts_espeak.data_path()
    root = espeak_timbres.ensure(espeak_timbres.name(5, 0), shipped)
    vdir = root / "espeak-ng-data" / "voices" / "!v"
    assert {p.name for p in (shipped / "voices" / "!v").iterdir()} < {
        p.name for p in vdir.iterdir()}
    assert (vdir / "intentd-gen-5-0").read_text() == espeak_timbres.variant_text(
        "intentd-gen-5-0")
    assert espeak_timbres.overlay_root(shipped) == root  # built once, then reused
    other = espeak_timbres.ensure(espeak_timbres.name(5, 1), shipped)
    assert other == root and not (vdir / "intentd-gen-5-0").exists()  # one at a time


def test_generated_speakers_speak_reproducibly_and_differently() -> None:
    sps = tts_espeak.generated_speakers(7, 3)
    assert [s.variant for s in sps] == ["intentd-gen-7-0", "intentd-gen-7-1", "intentd-gen-7-2"]
    assert len({s.accent for s in sps}) == 3  # accents taken in turn
    first = tts_espeak.speak(TEXT, sps[0], random.Random(1), SR)
    assert first.dtype == np.float32 and 1.5 * SR < first.size < 6 * SR
    np.testing.assert_array_equal(first, tts_espeak.speak(TEXT, sps[0], random.Random(1), SR))
    # A shipped voice after a generated one is unchanged (the engine reloads its data dir).
    shipped = tts_espeak.all_speakers(7)[0]
    before = tts_espeak.speak(TEXT, shipped, random.Random(1), SR)
    tts_espeak.speak(TEXT, sps[1], random.Random(1), SR)
    np.testing.assert_array_equal(before, tts_espeak.speak(TEXT, shipped, random.Random(1), SR))
    # Different timbres: not the same spectrum (same text, accent pattern aside).
    same_accent = tts_espeak.EspeakSpeaker(sps[0].accent, sps[1].variant, sps[0].rate_wpm,
                                           sps[0].pitch, sps[0].pitch_range)
    other = tts_espeak.speak(TEXT, same_accent, random.Random(1), SR)
    assert abs(_spectral_centroid_hz(first) - _spectral_centroid_hz(other)) > 20.0


def test_generated_timbres_join_the_training_side_only() -> None:
    train, test = split_speakers(7, 0.2)
    train_g, test_g = split_speakers(7, 0.2, gen_timbres=40)
    assert test_g == test
    assert train_g[: len(train)] == train
    assert all(espeak_timbres.is_generated(s.variant) for s in train_g[len(train):])
    assert len(train_g) == len(train) + 40
    only_us, _ = split_speakers(7, 0.2, train_accents=("en-us",), gen_timbres=5)
    assert {s.accent for s in only_us} == {"en-us"}


def test_plan_uses_generated_timbres_in_train_only(tiny_spec: Path) -> None:
    spec = load_spec(tiny_spec)
    opts = SynthOptions(per_intent=40, piper_share=0.0, flite_share=0.0, seed=3,
                        gen_timbres=200)
    jobs = plan(spec, opts)
    gen = [j for j in jobs if j.engine == "espeak"
           and espeak_timbres.is_generated(j.speaker.variant)]
    assert gen and all(j.split == "train" for j in gen)
    assert not any(j.split == "test" and espeak_timbres.is_generated(j.speaker.variant)
                   for j in jobs if j.engine == "espeak")
    # Without them, the plan is today's: no generated speaker anywhere.
    plain = plan(spec, SynthOptions(per_intent=40, piper_share=0.0, flite_share=0.0, seed=3))
    assert not any(j.speaker is not None and isinstance(j.speaker, tts_espeak.EspeakSpeaker)
                   and espeak_timbres.is_generated(j.speaker.variant) for j in plain)


def test_bad_count_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--gen-timbres"):
        SynthOptions(gen_timbres=-1).validate()
