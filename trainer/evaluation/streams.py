"""Long test streams with exact truth spans, built from single utterances or a recording.

An utterance stream is: gap, utt, gap, utt, ..., gap with gaps of 1.5-3 s. Each utterance
is trimmed to its audible part first (``intentd.trainer.synthesis.pauses.speech_bounds``), so a
truth span is exactly the speech. Some utterances get an internal pause (0.3-1.2 s of silence) at
the quietest 20 ms frame in their middle third (a word boundary, roughly): the daemon must
keep such a hesitation inside one utterance. Everything is driven by one seeded rng.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.output.events import REJECT_LABEL
from intentd.daemon.score import Span, read_truth
from intentd.trainer.synthesis.pauses import speech_bounds

SAMPLE_RATE_HZ = 16000


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # mono float32 at SAMPLE_RATE_HZ
    intent: str
    uid: str = ""
    slots: dict[str, str] | None = None  # None: the data set has no slots


@dataclass
class Stream:
    name: str
    audio: np.ndarray  # clean track (speech + gaps), float32 at SAMPLE_RATE_HZ
    spans: list[Span]

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class StreamOptions:
    gap_s: tuple[float, float] = (1.5, 3.0)
    pause_prob: float = 0.3
    pause_s: tuple[float, float] = (0.3, 1.2)
    per_stream: int = 12


def load_utterances(src: str, max_utterances: int | None, seed: int
                    ) -> tuple[list[Utterance], tuple[str, ...]]:
    """The test split of an audiofolder/manifest SRC, shuffled (seeded) and capped."""
    from intentd.trainer.fitting.data import load_audio, load_data

    data = load_data(src, seed=seed)
    # The rejection class is what the truth spans are not: its audio belongs to the
    # false-accept streams, not among the commands.
    examples = [ex for ex in data.test if ex.label != REJECT_LABEL]
    with_slots = any(ex.slots for ex in (*data.train, *data.test))
    random.Random(f"eval:{seed}").shuffle(examples)
    if max_utterances is not None:
        examples = examples[:max_utterances]
    utts = []
    for ex in examples:
        audio = load_audio(ex, SAMPLE_RATE_HZ)
        s, e = speech_bounds(audio, SAMPLE_RATE_HZ)
        if e <= s:
            continue  # silent file: nothing a VAD could find
        utts.append(Utterance(audio[s:e].astype(np.float32), ex.label, ex.uid,
                              dict(ex.slots) if with_slots else None))
    if not utts:
        raise DataError(f"{src}: the test split has no audible utterances")
    return utts, tuple(label for label in data.labels if label != REJECT_LABEL)


def pause_point(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    """Sample index of the quietest 20 ms frame in the middle third (start of that frame
    + half a frame), where a pause splits the utterance least destructively."""
    frame = sample_rate_hz // 50
    m = audio.size // frame
    if m < 3:
        return audio.size // 2
    energy = np.sum(np.square(audio[: m * frame].reshape(m, frame), dtype=np.float64), axis=1)
    lo, hi = m // 3, max(m // 3 + 1, (2 * m) // 3)
    k = lo + int(np.argmin(energy[lo:hi]))
    return k * frame + frame // 2


def with_pause(audio: np.ndarray, pause_samples: int) -> np.ndarray:
    """``audio`` with ``pause_samples`` of silence at the :func:`pause_point` of its audible
    part (silence around the words, as training clips have, is not searched)."""
    start, end = speech_bounds(audio)
    at = start + pause_point(audio[start:end])
    return np.concatenate([audio[:at], np.zeros(pause_samples, np.float32), audio[at:]])


def build_stream(utts: list[Utterance], rng: random.Random, options: StreamOptions,
                 name: str = "stream") -> Stream:
    """Join ``utts`` with random gaps; spans are exact sample positions / rate."""
    sr = SAMPLE_RATE_HZ
    pieces: list[np.ndarray] = []
    spans: list[Span] = []
    pos = 0

    def gap() -> None:
        nonlocal pos
        g = np.zeros(int(rng.uniform(*options.gap_s) * sr), np.float32)
        pieces.append(g)
        pos += g.size

    gap()
    for u in utts:
        audio = u.audio
        if audio.size >= sr // 2 and rng.random() < options.pause_prob:
            audio = with_pause(audio, int(rng.uniform(*options.pause_s) * sr))
        spans.append(Span(pos / sr, (pos + audio.size) / sr, u.intent, u.slots))
        pieces.append(audio.astype(np.float32))
        pos += audio.size
        gap()
    return Stream(name, np.concatenate(pieces), spans)


def build_streams(utts: list[Utterance], seed: int, options: StreamOptions) -> list[Stream]:
    rng = random.Random(f"streams:{seed}")
    k = max(1, options.per_stream)
    return [build_stream(utts[i: i + k], rng, options, name=f"utts{i // k:03d}")
            for i in range(0, len(utts), k)]


def load_recording(wav: str | Path, truth_csv: str | Path) -> Stream:
    """A long recording and its ``start_s,end_s,intent`` CSV as one stream (16 kHz)."""
    import soundfile as sf

    from intentd.daemon.audio.windowing import preprocess

    try:
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{wav}: cannot read the recording ({exc}); use wav/flac/ogg") from None
    track = preprocess(audio, int(rate), SAMPLE_RATE_HZ)
    spans = read_truth(Path(truth_csv))
    if not spans:
        raise DataError(f"{truth_csv}: no truth rows; add start_s,end_s,intent lines")
    return Stream(Path(wav).stem, track, spans)
