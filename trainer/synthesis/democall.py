"""``intentd-train democall``: a long "phone call" WAV with a truth CSV for end-to-end demos.

Utterances of random intents are spoken by held-out voices (the same split as
``synth`` for the same ``--seed`` and ``--test-fraction``), separated by 1.5-3 s gaps, some
with an internal 0.3-1.2 s pause (a hesitation the daemon should keep inside one
utterance), over continuous background noise. ``start_s``/``end_s`` are the exact
speech boundaries: TTS leading/trailing silence is trimmed before placement. For a spec
with slot tags the truth gains a ``slots`` column: each command's slot values as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from intentd.daemon.errors import ConfigError, DataError
from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis import pauses, tts_espeak
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.synth_plan import split_speakers
from intentd.trainer.synthesis.templates import Spec, Utterance

CALL_NOISE_KINDS = ("pink", "brown", "hum", "babble")


@dataclass(frozen=True)
class CallSummary:
    out_wav: str
    out_csv: str
    n_utterances: int
    duration_s: float
    sample_rate_hz: int
    voices: int
    noise_kind: str
    snr_db: float


def _speakers(seed: int, voices: str, test_fraction: float) -> list[tts_espeak.EspeakSpeaker]:
    train, test = split_speakers(seed, test_fraction)
    if voices == "test":
        return test
    if voices == "train":
        return train
    if voices == "all":
        return train + test
    raise ConfigError(f"--voices must be test, train or all, got {voices!r}")


def _utterance(text: str, speaker: tts_espeak.EspeakSpeaker, rng: random.Random,
               pause_prob: float, sr: int) -> np.ndarray:
    jitter = random.Random(rng.random())
    if len(text.split()) >= pauses.MIN_WORDS and rng.random() < pause_prob:
        k = pauses.split_at(text, rng)
        pause_s = rng.uniform(*pauses.PAUSE_S)
        # Each half gets its own jitter: a hesitation can reset the speaker's pace.
        return pauses.speak_with_pause(
            text, k, pause_s,
            lambda part: tts_espeak.speak(part, speaker, random.Random(jitter.random()), sr),
            sr)
    return pauses.trim(tts_espeak.speak(text, speaker, jitter, sr), sr)


def make_call(spec_path: str | Path, out_wav: str | Path, out_csv: str | Path,
              n_utterances: int = 20, seed: int = 0, sample_rate_hz: int = 16000,
              voices: str = "test", pause_prob: float = 0.4,
              snr_db: tuple[float, float] = (15.0, 25.0), test_fraction: float = 0.2,
              gap_s: tuple[float, float] = (1.5, 3.0),
              noise_kind: str | None = None, voice_seed: int | None = None) -> CallSummary:
    """Write the call audio (PCM16 mono at ``sample_rate_hz``: 16000, or 8000 for a
    μ-law phone line) and its truth CSV ``start_s,end_s,intent,text[,slots]``.

    ``noise_kind`` (one of ``CALL_NOISE_KINDS``) fixes the background; by default the seed
    draws it. The speech and the truth do not depend on it; the noise's level is drawn after
    the noise, so it may differ. ``voice_seed`` (default ``seed``) picks the voice split, so
    many different calls can all be spoken by one model's held-out voices."""
    import soundfile as sf

    if n_utterances < 1:
        raise ConfigError(f"--n must be >= 1, got {n_utterances}")
    if sample_rate_hz not in (8000, 16000):
        raise ConfigError(f"--rate-hz must be 16000 or 8000, got {sample_rate_hz}")
    if not 0.0 <= pause_prob <= 1.0:
        raise ConfigError(f"--pause-prob must be in [0, 1], got {pause_prob}")
    if noise_kind is not None and noise_kind not in CALL_NOISE_KINDS:
        raise ConfigError(f"--noise-kind must be one of {', '.join(CALL_NOISE_KINDS)}, got "
                          f"{noise_kind!r}")
    spec: Spec = load_spec(spec_path)
    speakers = _speakers(seed if voice_seed is None else voice_seed, voices, test_fraction)
    sr = 16000
    rng = random.Random(f"democall:{seed}")
    texts: dict[str, list[Utterance]] = {}
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(*gap_s) * sr), np.float32)]
    rows: list[tuple[float, float, str, str, dict[str, str]]] = []
    used: set[str] = set()
    pos = pieces[0].size
    for _ in range(n_utterances):
        intent = rng.choice(spec.labels)
        if intent not in texts:
            texts[intent] = spec.utterances(intent, 50, random.Random(f"{seed}:{intent}"))
        said = rng.choice(texts[intent])
        text = said.text
        speaker = rng.choice(speakers)
        used.add(speaker.voice_id)
        speech = _utterance(text, speaker, rng, pause_prob, sr)
        speech = aug.apply_gain(speech, rng.uniform(-6.0, 0.0))
        rows.append((pos / sr, (pos + speech.size) / sr, intent, text, said.slot_dict()))
        gap = np.zeros(int(rng.uniform(*gap_s) * sr), np.float32)
        pieces += [speech, gap]
        pos += speech.size + gap.size
    track = np.concatenate(pieces)
    nrng = np.random.default_rng(rng.getrandbits(63))
    kind = CALL_NOISE_KINDS[int(nrng.integers(len(CALL_NOISE_KINDS)))]
    kind = noise_kind or kind
    noise = aug.make_noise(kind, track.size, nrng, sr, crowd_pool="eval")
    snr = float(nrng.uniform(*snr_db))
    track = aug.mix_at_snr(track, noise, snr, nrng)
    track = aug.limit_peak(track, 0.9)
    if sample_rate_hz == 8000:
        import soxr

        track = soxr.resample(aug.telephone(track, sr), sr, 8000, quality="HQ")
    out_wav, out_csv = Path(out_wav), Path(out_csv)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_wav), track, sample_rate_hz, subtype="PCM_16")
    with open(out_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        # The slots column only for a spec with slot tags: other truth files stay as they were.
        tagged = any(spec.intent_slots.values())
        w.writerow(["start_s", "end_s", "intent", "text", *(["slots"] if tagged else [])])
        for s, e, intent, text, slots in rows:
            w.writerow([f"{s:.3f}", f"{e:.3f}", intent, text,
                        *([json.dumps(slots, ensure_ascii=False)] if tagged else [])])
    return CallSummary(str(out_wav), str(out_csv), len(rows),
                       round(track.size / sample_rate_hz, 3), sample_rate_hz, len(used), kind,
                       round(snr, 1))


def add_democall_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC.yaml", help="intent spec (intents + slots)")
    parser.add_argument("--out", required=True, metavar="WAV", help="call audio to write")
    parser.add_argument("--truth", required=True, metavar="CSV",
                        help="truth CSV to write (start_s,end_s,intent,text)")
    parser.add_argument("--n", type=int, default=20, help="number of utterances (default 20)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed; use the synth seed so 'test' voices are held out")
    parser.add_argument("--voice-seed", type=int, default=None,
                        help="seed of the voice split only (default: --seed): other calls "
                             "in the held-out voices of the model trained with this seed")
    parser.add_argument("--voices", choices=("test", "train", "all"), default="test",
                        help="which side of the synth voice split speaks (default test)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="must match synth's --test-fraction (default 0.2)")
    parser.add_argument("--rate-hz", type=int, choices=(16000, 8000), default=16000,
                        help="output rate; 8000 renders a μ-law telephone line")
    parser.add_argument("--pause-prob", type=float, default=0.4,
                        help="share of utterances with an internal 0.3-1.2 s pause")
    parser.add_argument("--snr-db", type=float, nargs=2, default=[15.0, 25.0],
                        metavar=("MIN", "MAX"), help="background noise SNR range in dB")
    parser.add_argument("--noise-kind", choices=CALL_NOISE_KINDS, default=None,
                        help="background noise (default: drawn by the seed)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def run_democall(args: argparse.Namespace) -> int:
    for p in (args.out, args.truth):
        if Path(p).exists() and not args.force:
            raise DataError(f"{p}: already exists; pass --force to overwrite or choose "
                            "another path")
    summary = make_call(args.spec, args.out, args.truth, n_utterances=args.n, seed=args.seed,
                        voice_seed=args.voice_seed, sample_rate_hz=args.rate_hz,
                        voices=args.voices,
                        pause_prob=args.pause_prob, snr_db=(args.snr_db[0], args.snr_db[1]),
                        test_fraction=args.test_fraction, noise_kind=args.noise_kind)
    print(json.dumps(asdict(summary)), flush=True)
    return 0
