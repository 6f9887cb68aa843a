"""Streaming resampler: any capture rate/channels -> mono float32 at the model rate.

soxr's streaming resampler keeps its filter state across blocks, so the concatenated
output of ``process`` + ``flush`` matches a one-shot ``soxr.resample`` of the whole signal
(same quality): no clicks or lost samples at block edges.
"""

from __future__ import annotations

import numpy as np

from intentd.daemon.audio.windowing import to_mono_float

QUALITY = "HQ"  # the same quality as intentd.daemon.audio.windowing.preprocess (training side)


class StreamResampler:
    def __init__(self, in_rate_hz: int, out_rate_hz: int, channels: int = 1) -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError(f"sample rates must be > 0 Hz, got {in_rate_hz} -> {out_rate_hz}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.channels = channels
        self._stream = None
        if in_rate_hz != out_rate_hz:
            import soxr

            # Downmix happens before resampling, so the resampler itself is mono.
            self._stream = soxr.ResampleStream(
                in_rate_hz, out_rate_hz, 1, dtype="float32", quality=QUALITY
            )

    @property
    def identity(self) -> bool:
        return self._stream is None

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample one block (``[n]`` or ``[n, channels]``, float32 or int16) to mono float32."""
        a = np.asarray(block)
        if a.ndim == 2 and a.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got block shape {a.shape}")
        mono = to_mono_float(a)
        if self._stream is None:
            return mono.copy() if mono is block else mono
        return self._stream.resample_chunk(np.ascontiguousarray(mono))

    def flush(self) -> np.ndarray:
        """The resampler's tail at end of stream; call once, after the last ``process``."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
