"""Helpers shared by the Segmenter and noise-gate tests: feeding audio in random blocks and
checking that every kept utterance's audio is exactly the stream's audio over its span."""

from __future__ import annotations

import numpy as np

from intentd.daemon.audio.segmenter import (
    Discarded,
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)

SR = 16000
F30 = 480  # samples in a 30 ms frame at SR


def amplitude_vad(pcm: bytes) -> bool:
    """A stand-in for webrtcvad: speech is any frame with a sample above 1000 (of 32767)."""
    return bool(np.abs(np.frombuffer(pcm, "<i2")).max() > 1000)


def feed(seg: Segmenter, audio: np.ndarray, rng: np.random.Generator | None) -> list:
    events, i = [], 0
    while i < audio.size:
        n = int(rng.integers(1, 2000)) if rng is not None else audio.size
        events += seg.process(audio[i : i + n])
        i += n
    return events + seg.flush()


def check_audio_invariant(events: list, audio: np.ndarray) -> list[tuple[int, int, str]]:
    """Each kept utterance's audio equals audio[start:end]; returns (start, end, reason)."""
    utts: dict[int, dict] = {}
    kept = []
    for ev in events:
        if isinstance(ev, UtteranceStart):
            assert ev.index not in utts
            utts[ev.index] = {"start": ev.start_sample, "pieces": [], "next": ev.start_sample}
        elif isinstance(ev, UtteranceAudio):
            u = utts[ev.index]
            assert ev.start_sample == u["next"], "audio pieces must be contiguous"
            u["pieces"].append(ev.samples)
            u["next"] += ev.samples.size
        elif isinstance(ev, UtteranceEnd):
            u = utts[ev.index]
            got = np.concatenate(u["pieces"]) if u["pieces"] else np.zeros(0, np.float32)
            np.testing.assert_array_equal(got, audio[u["start"] : ev.end_sample])
            kept.append((u["start"], ev.end_sample, ev.reason))
            assert u["start"] <= ev.voiced_start_sample < ev.voiced_end_sample <= ev.end_sample
        else:
            assert isinstance(ev, Discarded) and ev.index in utts
    return kept


def harmonic(n: int, f0: float = 140.0) -> np.ndarray:
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def square(n_frames: int, amp: float) -> np.ndarray:
    """Alternating +-amp: every frame has energy exactly 20*log10(amp) dBFS."""
    n = n_frames * F30
    return (amp * np.where(np.arange(n) % 2, 1.0, -1.0)).astype(np.float32)
