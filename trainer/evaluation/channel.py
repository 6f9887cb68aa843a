"""The 8 kHz G.711 μ-law phone line used by ``--telephone``.

Audio is band-limited to 300-3400 Hz, resampled to 8 kHz, encoded to μ-law bytes and
decoded with the daemon's own decoder (:func:`intentd.daemon.audio.sources.decode_pcm`), so the
pipeline then gets exactly what ``intentd --input - --input-format mulaw --input-rate 8000`` would
and its resampler brings it back to the model rate. Streaming (stateful filter and
resampler) so hour-long false-accept streams can go through in chunks.
"""

from __future__ import annotations

import numpy as np
import soxr
from scipy.signal import butter, sosfilt, sosfilt_zi

from intentd.daemon.audio.sources import decode_pcm

PHONE_RATE_HZ = 8000
_BIAS = 0x84
_CLIP = 32635


def mulaw_encode_g711(samples: np.ndarray) -> np.ndarray:
    """Float [-1, 1] -> G.711 μ-law bytes (the inverse of
    ``intentd.daemon.audio.sources.MULAW_TO_INT16``)."""
    x = np.round(np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767.0)
    x = x.astype(np.int32)
    sign = (x < 0).astype(np.int32)
    mag = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~((sign << 7) | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


class PhoneLine:
    """16 kHz float chunks in -> 8 kHz float chunks as decoded from μ-law bytes."""

    def __init__(self, in_rate_hz: int = 16000) -> None:
        self._sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=in_rate_hz, output="sos")
        self._zi = sosfilt_zi(self._sos) * 0.0
        self._rs = soxr.ResampleStream(in_rate_hz, PHONE_RATE_HZ, 1, dtype="float32",
                                       quality="HQ")

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        band = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if band.size:
            band, self._zi = sosfilt(self._sos, band, zi=self._zi)
        at8k = self._rs.resample_chunk(band.astype(np.float32), last=last)
        codes = mulaw_encode_g711(at8k)
        return decode_pcm(codes.tobytes(), "mulaw").astype(np.float32) / 32768.0


def to_phone(audio: np.ndarray, in_rate_hz: int = 16000) -> np.ndarray:
    """A whole 16 kHz track through the phone line (8 kHz out, same duration)."""
    return PhoneLine(in_rate_hz).process(audio, last=True)
