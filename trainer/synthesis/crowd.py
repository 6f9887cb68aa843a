"""Crowd noise from synthetic talkers: babble (a few near voices) and a café (many far ones).

Both are mixed from single-talker eSpeak tracks. Training and evaluation draw on disjoint
pools (alternate voices of the speaker list, separate random texts), so the crowd an
evaluation or a demo call plays was never heard in training.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from intentd.trainer.synthesis import signals as sig
from intentd.trainer.synthesis.signals import max_frame_energy  # the SNR rule's frames

if TYPE_CHECKING:
    from intentd.trainer.synthesis.tts_espeak import EspeakSpeaker

_BABBLE_TEXT = (
    "the weather today looks like rain so we stayed inside and talked about the trip "
    "she said the meeting moved to thursday afternoon because of the train delays "
    "could you pass the salt please I think the soup needs a little more "
    "we are going to the market later do you want anything from there "
    "my brother bought a new car last week and it is already making noises "
    "the kids played in the garden until it got dark and cold outside"
)

# Mixing 3-6 of 16 tracks at random offsets and gains gives each babble clip its own crowd.
# Larger pools (tune-encoder's ``crowd_talkers``) give a crowd more voices to draw from.
CROWD_POOLS: tuple[str, ...] = ("train", "eval")
POOL_TALKERS = 16
_POOL_TRACK_S = 20.0
_MAX_BABBLE_TALKERS = 6


def pool_speakers(pool: str) -> list[EspeakSpeaker]:
    """The eSpeak voices crowd ``pool`` may use: every other one of the speaker list."""
    from intentd.trainer.synthesis import tts_espeak

    if pool not in CROWD_POOLS:
        raise ValueError(f"unknown crowd pool {pool!r}; use one of {CROWD_POOLS}")
    index = CROWD_POOLS.index(pool)
    return tts_espeak.all_speakers(seed=12345)[index :: len(CROWD_POOLS)]


def check_pool_talkers(talkers: int, pool: str = "train") -> None:
    """A pool size babble can draw its 3-6 talkers from and the pool's voices can fill."""
    n_voices = len(pool_speakers(pool))
    if not _MAX_BABBLE_TALKERS <= talkers <= n_voices:
        raise ValueError(f"a crowd pool holds {_MAX_BABBLE_TALKERS}..{n_voices} talkers "
                         f"(babble mixes up to {_MAX_BABBLE_TALKERS}; the {pool} pool has "
                         f"{n_voices} voices), got {talkers}")


@functools.lru_cache(maxsize=4)
def talker_pool(pool: str = "train", sample_rate_hz: int = 16000,
                talkers: int = POOL_TALKERS) -> tuple[np.ndarray, ...]:
    """``talkers`` tracks of one eSpeak voice each saying random word strings, made once per
    process (about 0.1 s per track); unit RMS per sentence."""
    from intentd.trainer.synthesis import tts_espeak

    check_pool_talkers(talkers, pool)
    speakers = pool_speakers(pool)
    rng = np.random.default_rng([0xBAB, CROWD_POOLS.index(pool)])
    words = _BABBLE_TEXT.split()
    n = int(_POOL_TRACK_S * sample_rate_hz)
    tracks = []
    for i in rng.choice(len(speakers), size=talkers, replace=False):
        track = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n:
            text = " ".join(rng.choice(words, size=int(rng.integers(6, 14))))
            seg = sig._unit_rms(tts_espeak.speak(text, speakers[int(i)],
                                             sample_rate_hz=sample_rate_hz))[: n - filled]
            track[filled : filled + seg.size] = seg
            filled += seg.size + int(rng.integers(0, sample_rate_hz // 4))
        tracks.append(track)
    return tuple(tracks)


def babble_noise(n: int, rng: np.random.Generator, sample_rate_hz: int = 16000,
                 talkers: int | None = None, pool: str = "train",
                 pool_talkers: int = POOL_TALKERS) -> np.ndarray:
    """Several overlapped eSpeak talkers saying random word strings (crowd / office): 3-6
    tracks of ``pool`` (:func:`talker_pool` of ``pool_talkers``), each from a random point at
    0.5-1.0 gain."""
    tracks = talker_pool(pool, sample_rate_hz, pool_talkers)
    k = talkers if talkers is not None else int(rng.integers(3, _MAX_BABBLE_TALKERS + 1))
    if not 1 <= k <= len(tracks):
        raise ValueError(f"talkers must be in 1..{len(tracks)}, got {k}")
    out = np.zeros(n, dtype=np.float32)
    for i in rng.choice(len(tracks), size=k, replace=False):
        out += sig.fit_length(tracks[int(i)], n, rng) * np.float32(rng.uniform(0.5, 1.0))
    return sig._unit_rms(out)


_CAFE_BEDS = 4  # per POOL_TALKERS tracks in the pool


def _circular_convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    # Circular, so the reverberant tail wraps round and the bed loops without a seam.
    return np.fft.irfft(np.fft.rfft(x) * np.fft.rfft(ir, x.size), x.size).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _cafe_beds(pool: str, sample_rate_hz: int,
               pool_talkers: int = POOL_TALKERS) -> tuple[np.ndarray, ...]:
    """Murmur beds: ``POOL_TALKERS`` talkers of ``pool`` at once (all of a pool that size,
    else a random choice per bed), each 2-8 m away in a live room."""
    tracks = talker_pool(pool, sample_rate_hz, pool_talkers)
    rng = np.random.default_rng([0xCAFE, CROWD_POOLS.index(pool)])
    beds = []
    for _ in range(_CAFE_BEDS * max(1, len(tracks) // POOL_TALKERS)):
        bed = np.zeros_like(tracks[0])
        # A murmur of a larger pool's every talker would be a steadier noise, not more voices.
        chosen = (tracks if len(tracks) == POOL_TALKERS else
                  [tracks[int(i)] for i in rng.choice(len(tracks), POOL_TALKERS, replace=False)])
        for track in chosen:
            ir = sig.room_impulse(rng, sample_rate_hz, float(rng.uniform(0.5, 0.9)))
            ir[0] *= 0.25  # far from the microphone: mostly room, little direct sound
            shifted = np.roll(track, int(rng.integers(track.size)))
            bed += _circular_convolve(shifted, ir) / np.float32(rng.uniform(2.0, 8.0))
        beds.append(sig._unit_rms(bed))
    return tuple(beds)


def _clatter(n: int, rng: np.random.Generator, sample_rate_hz: int,
             rate_hz: float = 0.6) -> np.ndarray:
    """Dishes and cutlery: short ringing bursts (a few 1.5-7 kHz partials over a click)."""
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.poisson(rate_hz * n / sample_rate_hz))):
        length = int(rng.uniform(0.02, 0.12) * sample_rate_hz)
        t = np.arange(length) / sample_rate_hz
        burst = 0.5 * rng.standard_normal(length)
        for _ in range(int(rng.integers(2, 5))):
            burst += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(1500, 7000) * t
                                                    + rng.uniform(0, 2 * np.pi))
        burst *= np.exp(-t / rng.uniform(0.01, 0.05))
        start = int(rng.integers(0, max(1, n - length)))
        seg = burst[: n - start] * rng.uniform(0.2, 1.0)
        out[start : start + seg.size] += seg.astype(np.float32)
    return out


def cafe_noise(n: int, rng: np.random.Generator, sample_rate_hz: int = 16000,
               pool: str = "train", pool_talkers: int = POOL_TALKERS) -> np.ndarray:
    """A café: a murmur of 16 distant, reverberant talkers (no voice stands out, unlike
    :func:`babble_noise`'s 3-6 near ones) over clatter and a low rumble; the kind of noise
    the Picovoice Rhino benchmark mixes in (a café recording). The clatter's loudest frame
    stays below the murmur's, so under a max-frame-energy SNR the murmur sets the level."""
    beds = _cafe_beds(pool, sample_rate_hz, pool_talkers)
    bed = sig.fit_length(beds[int(rng.integers(len(beds)))], n, rng)
    clatter = _clatter(n, rng, sample_rate_hz)
    peak = max_frame_energy(clatter, sample_rate_hz)
    if peak > 0:
        clatter *= np.float32(np.sqrt(max_frame_energy(bed, sample_rate_hz) / peak)
                              * rng.uniform(0.3, 0.9))
    return sig._unit_rms(bed + clatter + np.float32(0.15) * sig.brown_noise(n, rng))
