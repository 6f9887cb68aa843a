"""The one windowing/preprocessing function shared by the trainer and the daemon.

Training and inference must see identical inputs, so both cut utterances with
:func:`cut_windows` (offline) or :class:`WindowCutter` (streaming), which yield the
same windows for the same samples.

Rule: windows start at 0, hop, 2*hop, ... while they fit inside the utterance. If the
last full window stops short of the end, one more window is aligned to the end so the
tail is always seen. An utterance shorter than one window gives a single window,
zero-padded on the right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    window_s: float = 1.0
    hop_s: float = 0.5
    sample_rate_hz: int = 16000

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0 seconds, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(
                f"hop_s must be > 0 and <= window_s ({self.window_s}), got {self.hop_s}"
            )
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate_hz)

    @property
    def hop_samples(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate_hz))


def window_bounds(n_samples: int, spec: WindowSpec) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the windows of an utterance of ``n_samples``.

    ``end`` may exceed ``n_samples`` only for the single padded window of a short utterance.
    """
    win, hop = spec.window_samples, spec.hop_samples
    if n_samples <= 0:
        return []
    if n_samples <= win:
        return [(0, win)]
    bounds = [(s, s + win) for s in range(0, n_samples - win + 1, hop)]
    if bounds[-1][1] < n_samples:
        bounds.append((n_samples - win, n_samples))
    return bounds


def to_mono_float(audio: np.ndarray) -> np.ndarray:
    """Downmix ``[n]`` or ``[n, channels]`` audio to mono float32 in [-1, 1]."""
    a = np.asarray(audio)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = a.astype(np.float32) / 2147483648.0
    elif a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128.0) / 128.0
    else:
        a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = a.mean(axis=1, dtype=np.float32)
    elif a.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D [samples, channels], got shape {a.shape}")
    return a


def preprocess(audio: np.ndarray, sample_rate_hz: int, target_rate_hz: int) -> np.ndarray:
    """Mono float32 at ``target_rate_hz``: what every model input starts from."""
    mono = to_mono_float(audio)
    if sample_rate_hz == target_rate_hz or mono.size == 0:
        return mono
    import soxr

    return soxr.resample(mono, sample_rate_hz, target_rate_hz, quality="HQ").astype(
        np.float32, copy=False
    )


def cut_windows(audio: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Windows of a mono utterance as a ``[n_windows, window_samples]`` float32 array."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"cut_windows needs mono 1-D audio, got shape {a.shape}")
    bounds = window_bounds(a.size, spec)
    out = np.zeros((len(bounds), spec.window_samples), dtype=np.float32)
    for i, (s, e) in enumerate(bounds):
        seg = a[s:min(e, a.size)]
        out[i, : seg.size] = seg
    return out


class WindowCutter:
    """Streaming twin of :func:`cut_windows` for one utterance.

    ``push`` returns the windows that became complete; ``finish`` returns the tail
    window (end-aligned or padded) if the rule needs one. Concatenating all returned
    windows equals ``cut_windows`` of the whole utterance.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._buf = np.zeros(0, dtype=np.float32)
        self._offset = 0  # utterance sample index of _buf[0]
        self._next_start = 0
        self._n_samples = 0
        self._emitted = 0
        self._last_end = 0

    @property
    def n_samples(self) -> int:
        return self._n_samples

    @property
    def windows_emitted(self) -> int:
        return self._emitted

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; return ``(start_sample, window)`` for each window now complete."""
        s = np.asarray(samples, dtype=np.float32)
        self._buf = np.concatenate([self._buf, s]) if self._buf.size else s.copy()
        self._n_samples += s.size
        win, hop = self.spec.window_samples, self.spec.hop_samples
        out: list[tuple[int, np.ndarray]] = []
        while self._next_start + win <= self._n_samples:
            rel = self._next_start - self._offset
            out.append((self._next_start, self._buf[rel : rel + win].copy()))
            self._last_end = self._next_start + win
            self._next_start += hop
        self._emitted += len(out)
        # Keep only what a future window (or the end-aligned tail) can still need.
        keep_from = min(self._next_start, max(0, self._n_samples - win))
        if keep_from > self._offset:
            self._buf = self._buf[keep_from - self._offset :]
            self._offset = keep_from
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The tail window, if the utterance needs one after everything pushed so far."""
        win = self.spec.window_samples
        n = self._n_samples
        if n == 0:
            return []
        if self._emitted == 0:
            w = np.zeros(win, dtype=np.float32)
            w[: self._buf.size] = self._buf[:win]
            self._emitted = 1
            self._last_end = n
            return [(0, w)]
        if self._last_end < n:
            rel = n - win - self._offset
            self._emitted += 1
            self._last_end = n
            return [(n - win, self._buf[rel : rel + win].copy())]
        return []
