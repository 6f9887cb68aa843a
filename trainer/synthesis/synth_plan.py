"""Which utterances ``synth`` renders: text, voice, split and seed of each, from the seed alone.

Speakers are eSpeak NG accent × variant pairs; the split holds out whole variants (timbres)
with every accent, so a test voice never appears in training. The rejection class
(:mod:`.negatives`) is planned like an intent, its babble and noise clips included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from intentd.trainer.synthesis import negatives, pauses, tts_espeak, tts_flite
from intentd.trainer.synthesis.templates import Spec

if TYPE_CHECKING:
    from intentd.trainer.synthesis.synth import SynthOptions


def split_speakers(seed: int, test_fraction: float, train_accents: tuple[str, ...] = (),
                   test_accents: tuple[str, ...] = (), gen_timbres: int = 0
                   ) -> tuple[list[tts_espeak.EspeakSpeaker], list[tts_espeak.EspeakSpeaker]]:
    """(train, test) eSpeak speakers; test holds out whole variants across all accents.

    ``train_accents`` / ``test_accents`` (empty = all) further restrict each side to those
    accents, so a test voice can differ from every training voice in accent as well.
    ``gen_timbres`` generated timbres (:mod:`intentd.trainer.synthesis.espeak_timbres`) join the
    training side only."""
    variants = tts_espeak.available_variants()
    rng = random.Random(f"split:{seed}")
    shuffled = sorted(variants)
    rng.shuffle(shuffled)
    n_test = min(len(variants) - 1, max(1, round(len(variants) * test_fraction)))
    held = set(shuffled[:n_test])
    speakers = tts_espeak.all_speakers(seed)
    generated = tts_espeak.generated_speakers(seed, gen_timbres, train_accents)
    return ([s for s in speakers if s.variant not in held
             and (not train_accents or s.accent in train_accents)] + generated,
            [s for s in speakers if s.variant in held
             and (not test_accents or s.accent in test_accents)])


@dataclass(frozen=True)
class Job:
    split: str
    file_name: str
    label: str
    text: str
    # "espeak" | "piper" | "flite" | "babble" | "noise" (rejection class, no single voice)
    engine: str
    speaker: tts_espeak.EspeakSpeaker | tts_flite.FliteSpeaker | None
    seed: int
    # A hesitation: words ``[:pause_at]`` and ``[pause_at:]`` rendered apart with
    # ``pause_s`` of silence between (0: one rendering). See ``_pause``.
    pause_at: int = 0
    pause_s: float = 0.0
    # The slot values the sentence carries, ``(name, value)`` in spoken order.
    slots: tuple[tuple[str, str], ...] = ()
    # Rejection class: "head" / "tail" keeps that part of the command's audio, cut between
    # two words (pauses.cut); "" the whole rendering.
    cut: str = ""


def plan(spec: Spec, options: SynthOptions) -> list[Job]:
    """Every utterance to render, in a fixed order that depends only on the seed."""
    train_sp, test_sp = split_speakers(options.seed, options.test_fraction,
                                       options.train_accents, options.test_accents,
                                       options.gen_timbres)
    jobs: list[Job] = []
    commands: list[str] = []
    for li, label in enumerate(spec.labels):
        rng = random.Random(f"plan:{options.seed}:{label}")
        utts = spec.utterances(label, options.per_intent, rng)
        commands += [u.text for u in utts]
        slots = {u.text: tuple((s.name, s.value) for s in u.slots) for u in utts}
        jobs += [replace(j, slots=slots.get(j.text, ()))
                 for j in _label_jobs(label, li, [u.text for u in utts], options.per_intent,
                                      options, train_sp, test_sp, rng)]
    n_reject = round(options.per_intent * options.reject_share)
    if n_reject >= 2:
        rng = random.Random(f"plan:{options.seed}:{negatives.REJECT_LABEL}")
        texts = negatives.sentences(n_reject, rng)
        cut = negatives.cut_commands(commands, round(n_reject * options.cut_share),
                                     random.Random(f"cut:{options.seed}"))
        texts = texts[: n_reject - len(cut)] + cut
        jobs += _label_jobs(negatives.REJECT_LABEL, len(spec.labels), texts, n_reject,
                            options, train_sp, test_sp, rng, frozenset(cut))
    return jobs


def _label_jobs(label: str, li: int, texts: list[str], n: int, options: SynthOptions,
                train_sp: list[tts_espeak.EspeakSpeaker], test_sp: list[tts_espeak.EspeakSpeaker],
                rng: random.Random, cut: frozenset[str] = frozenset()) -> list[Job]:
    """``cut``: texts of the rejection class that are commands, spoken and cut."""
    rng.shuffle(texts)
    n_piper = round(n * options.piper_share)
    # The rejection class gets its share too (its out-of-domain sentences, like Piper's): a
    # voice heard only in commands would teach the head that the voice means a command.
    n_flite = round(n * options.flite_share)
    n_esp = n - n_piper - n_flite
    n_test = max(1, round(n_esp * options.test_fraction))
    kinds = (["piper"] * n_piper + ["flite"] * n_flite + ["test"] * n_test
             + ["train"] * (n_esp - n_test))
    tr, te = train_sp[:], test_sp[:]
    rng.shuffle(tr)
    rng.shuffle(te)
    # Each label starts where the last left off, so few per intent still cover every voice.
    flite = tts_flite.speakers(rng, n_flite, start=li * n_flite)
    counters = {"train": 0, "test": 0}
    jobs = []
    for i, kind in enumerate(kinds):
        text = texts[i % len(texts)]
        seed = (options.seed * 1_000_003 + li * 10_007 + i) % (2**63)
        if kind == "piper":
            split, engine, sp = "train", "piper", None
        elif kind == "flite":
            split, engine, sp = "train", "flite", flite[i - n_piper]
        else:
            pool = te if kind == "test" else tr
            split, engine = kind, "espeak"
            sp = pool[counters[kind] % len(pool)]
            counters[kind] += 1
            if label == negatives.REJECT_LABEL:
                # Rejection audio without a single clear voice: babble and noise.
                background = negatives.kind_of(counters[kind] - 1, n_test if kind == "test"
                                               else n_esp - n_test)
                if background in negatives.BACKGROUND_KINDS:
                    # Talkers come from the split's pool at render time, not from ``sp``.
                    engine, text, sp = background, f"<{background}>", None
        name = f"{label}_{i:05d}.wav"
        part = ("head", "tail")[seed % 2] if text in cut else ""
        pause_at, pause_s = (_pause(text, seed, options.pause_share)
                             if split == "train" and engine in ("espeak", "flite") and not part
                             else (0, 0.0))
        jobs.append(Job(split, name, label, text, engine, sp, seed, pause_at, pause_s,
                        cut=part))
    return jobs


def _pause(text: str, seed: int, share: float) -> tuple[int, float]:
    """``(pause_at, pause_s)`` for a training utterance: with probability ``share`` (when
    the text has words enough) a split point and a gap of ``TRAIN_PAUSE_S``.

    Its own rng, so ``share`` 0 plans exactly what the planner did before pauses existed.
    """
    rng = random.Random(f"pause:{seed}")
    if share <= 0 or rng.random() >= share:
        return 0, 0.0
    k = pauses.split_at(text, rng)
    return (k, round(rng.uniform(*pauses.TRAIN_PAUSE_S), 3)) if k else (0, 0.0)
