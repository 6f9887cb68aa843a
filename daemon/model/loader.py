"""Model backends for the daemon: a saved model dir ->
:class:`intentd.daemon.model.backend.ModelBackend`.

Two implementations, chosen from the dir's ``config.json``:

- :class:`CompactBackend` for ``intentd-compact`` models: the utterance scorer computes
  speech embeddings incrementally while audio arrives, so the verdict at the end of an
  utterance only runs the small head, in numpy (:mod:`.compact_numpy`): no torch or
  transformers is imported.
- :class:`HFBackend` for any other ``AutoModelForAudioClassification`` dir (wav2vec2, HuBERT,
  AST...): its feature extractor + model; the utterance scorer runs the model once over the
  whole utterance when asked for the result.

Both return probabilities in label-id order (``config.id2label``), from logits divided by
the config's ``score_temperature`` (fitted by ``intentd-train fit``, see
``intentd.trainer.fitting.calibrate``; 1.0 when absent).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.model import checksums, compact_numpy, ensemble, frontends
from intentd.daemon.model.backend import WINDOW_BATCH, CollectingScorer
from intentd.daemon.model.compact_numpy import MODEL_TYPE
from intentd.daemon.model.sentences import Sentences
from intentd.daemon.model.slots import SlotSpace

logger = logging.getLogger(__name__)

_EXPECTED = (
    "expected a model directory saved by `intentd-train fit` (or save_pretrained) with "
    "config.json, model weights and preprocessor_config.json"
)
# Embeddings computed together while an utterance streams in (0.96 s of audio): ~5x less
# front-end work than one at a time (``intentd.daemon.model.embedding.StreamingEmbedder``), and the
# verdict, which needs them only at the end of the utterance, waits for at most 11.
STREAM_BATCH_EMBEDDINGS = 12


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _temperature(config: dict[str, Any], path: Path) -> float:
    value = config.get("score_temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            np.isfinite(value) and value > 0):
        raise DataError(
            f"{path / 'config.json'}: score_temperature must be a positive number, got "
            f"{value!r}; remove the key (1.0) or re-run `intentd-train fit`"
        )
    return float(value)


def _labels(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    raw = config.get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, TypeError, ValueError):
        id2label = {}
    n = len(raw) if isinstance(raw, dict) else 0
    if n == 0 or sorted(id2label) != list(range(n)):
        raise DataError(
            f"{path / 'config.json'}: id2label must name every class id 0..{n - 1}, "
            f"got ids {sorted(id2label)}; re-save the model with its label map"
        )
    return tuple(id2label[i] for i in range(n))


class CompactUtteranceScorer:
    """Feeds the front-end during ``push`` (the speech embedding computes as audio arrives;
    Whisper's encoder waits for the end); ``result`` completes it and runs the head."""

    def __init__(self, backend: CompactBackend) -> None:
        self._backend = backend
        self._embedder = frontends.streaming(backend.frontend, threads=backend.threads,
                                             batch_embeddings=STREAM_BATCH_EMBEDDINGS,
                                             weights=backend.frontend_weights)
        self._chunks: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        new = self._embedder.push(samples)
        if new.shape[0]:
            self._chunks.append(new)

    @property
    def n_samples(self) -> int:
        return int(self._embedder.n_samples)

    def audio(self) -> np.ndarray | None:
        """The utterance's audio when the front-end encodes it only at the end (Whisper),
        so that several utterances can be encoded together; None otherwise."""
        audio = getattr(self._embedder, "audio", None)
        return audio() if audio is not None else None

    def embeddings(self) -> np.ndarray:
        """Complete the front-end: ``[T, dim]`` for everything pushed."""
        if self._embedder.n_samples == 0:
            raise ValueError("result() called before any audio was pushed")
        tail = self._embedder.finish()
        if self._embedder.n_embeddings == 0:
            return tail  # the padded embedding of a clip shorter than one receptive field
        if tail.shape[0]:
            self._chunks.append(tail)
        return np.concatenate(self._chunks)

    def result(self) -> np.ndarray:
        return self._backend.classify_embeddings([self.embeddings()])[0]


class CompactBackend:
    """A frozen front-end (:mod:`intentd.daemon.model.frontends`) + the trained compact head
    (:mod:`.compact_numpy`)."""

    def __init__(self, head: compact_numpy.NumpyCompactHead, config: dict[str, Any], name: str,
                 labels: tuple[str, ...], threads: int, temperature: float = 1.0,
                 frontend_weights: Path | None = None) -> None:
        self.head = head
        self.name = name
        self.labels = labels
        self.sample_rate_hz = frontends.SAMPLE_RATE_HZ
        self.threads = threads
        self.temperature = temperature
        # Models saved before front-ends had names lack the key: the default is theirs.
        self.frontend = frontends.check(config.get("frontend", frontends.SPEECH_EMBEDDING))
        self.streams_audio = frontends.streams(self.frontend)
        self.embedding_dim = head.embedding_dim
        self.frontend_weights = frontend_weights
        self.slot_space: SlotSpace | None = head.slot_space
        self.sentences: Sentences | None = Sentences.from_config(
            config.get("intent_sentences"), config.get("slot_texts"))

    def classify_embeddings(self, embeddings: list[np.ndarray]) -> np.ndarray:
        """``[T_i, dim]`` sequences -> probabilities ``[n, n_labels]``."""
        return self.classify_embeddings_with_slots(embeddings)[0]

    def classify_embeddings_with_slots(self, embeddings: list[np.ndarray]
                                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Intent probabilities ``[n, n_labels]`` and, for a slot model, each head's
        probabilities ``[n, slot_space.width]`` (else None)."""
        t_max = max(e.shape[0] for e in embeddings)
        x = np.zeros((len(embeddings), t_max, self.embedding_dim), dtype=np.float32)
        mask = np.zeros((len(embeddings), t_max), dtype=bool)
        for i, e in enumerate(embeddings):
            x[i, : e.shape[0]] = e
            mask[i, : e.shape[0]] = True
        logits, slot_logits = self.head(x, mask)
        slot_probs = (None if slot_logits is None or self.slot_space is None
                      else self.slot_space.probabilities(slot_logits))
        return _softmax(logits, self.temperature), slot_probs

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.classify_embeddings(frontends.embed_many(
            self.frontend, list(w), threads=self.threads, weights=self.frontend_weights))

    def utterance_scorer(self) -> CompactUtteranceScorer:
        return CompactUtteranceScorer(self)

    def score_many(self, scorers: Sequence[CompactUtteranceScorer]
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Several finished utterances at once: the encoder batches what it can
        (:func:`frontends.embed_many`), the head runs once on all (its padding is masked)."""
        if any(s.n_samples == 0 for s in scorers):
            raise ValueError("result() called before any audio was pushed")
        audios = [s.audio() for s in scorers]
        if all(a is not None for a in audios):
            embs = frontends.embed_many(self.frontend, audios,  # type: ignore[arg-type]
                                        threads=self.threads, weights=self.frontend_weights)
        else:
            embs = [s.embeddings() for s in scorers]
        return self.classify_embeddings_with_slots(embs)


class HFBackend:
    """Any transformers audio-classification model with its feature extractor."""

    def __init__(self, model: Any, feature_extractor: Any, name: str, labels: tuple[str, ...],
                 temperature: float = 1.0) -> None:
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.name = name
        self.labels = labels
        self.temperature = temperature
        self.sample_rate_hz = int(feature_extractor.sampling_rate)
        self.streams_audio = False  # the scorer collects the utterance, runs at its end

    def classify_batch(self, audios: list[np.ndarray]) -> np.ndarray:
        import torch

        inputs = self.feature_extractor(
            audios, sampling_rate=self.sample_rate_hz, return_tensors="pt", padding=True
        )
        with torch.inference_mode():
            out = self.model(**inputs)
        return _softmax(out.logits.float().numpy(), self.temperature)

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = [
            self.classify_batch(list(w[s : s + WINDOW_BATCH]))
            for s in range(0, w.shape[0], WINDOW_BATCH)
        ]
        return np.concatenate(parts)

    def utterance_scorer(self) -> CollectingScorer:
        return CollectingScorer(self)


def read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(f"model dir {path} does not exist; train one (`intentd-train fit "
                        f"--data D --out DIR`; `bash examples/demo.sh` makes demo/model) and "
                        f"pass --model DIR or set model.path")
    if not path.is_dir():
        raise DataError(f"model path {path} is not a directory; {_EXPECTED}")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise DataError(f"{path} has no config.json, so it is not a model; {_EXPECTED}")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{cfg}: cannot read it as JSON ({err}); {_EXPECTED}") from err
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise DataError(f"{cfg}: no \"model_type\" key; {_EXPECTED}")
    return data


def _frontend_weights(config: dict[str, Any], path: Path) -> Path | None:
    """The model's own front-end weights dir (a tuned encoder), checked to be there."""
    sub = config.get("frontend_weights")
    if not sub:
        return None
    weights = path / sub
    if not (weights / "model.bin").is_file():
        raise DataError(f"{path}: its config names tuned front-end weights in {sub}/, but "
                        f"{weights / 'model.bin'} is missing; copy the whole model dir, or "
                        "re-run intentd-train tune-encoder")
    return weights


def _verify_frontend(backend: CompactBackend, config: dict[str, Any], path: Path) -> None:
    """The front-end weights are the ones the model was trained on (:mod:`.checksums`)."""
    recorded = config.get(checksums.CONFIG_KEY)
    if recorded is None:
        logger.warning("%s records no checksums of its front-end weights, so they are not "
                       "verified; re-save it with this version of intentd-train", path)
        return
    checksums.verify(backend.frontend, recorded, path, backend.frontend_weights)


def _load_hf(path: Path, name: str, labels: tuple[str, ...], temperature: float,
             threads: int) -> HFBackend:
    """A transformers model with its feature extractor, on torch (the ``torch`` extra)."""
    try:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
    except ImportError as err:
        raise DataError(f"{path} is a transformers model ({err.name} is not installed): "
                        "pip install 'intentd[torch]' to run it on torch") from err
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable once per process, before any torch work
        torch.set_num_interop_threads(1)
    extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    model = AutoModelForAudioClassification.from_pretrained(path, local_files_only=True)
    return HFBackend(model, extractor, name, labels, temperature)


def _limit_blas(threads: int) -> None:
    """numpy's BLAS (the compact head, the mel filters) on ``threads`` threads. OpenBLAS
    starts one per core, and between small products they spin: with 2 cores, log-mel of 3 s
    took 7.6 ms against 3.3 ms on one thread, and the spinning thread used half a core."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_backend(model_dir: str | Path, threads: int = 1, backend_choice: str = "auto",
                 ) -> CompactBackend | HFBackend | ensemble.EnsembleBackend:
    """Load a saved model dir (or an ensemble of them) for inference with ``threads``
    intra-op CPU threads. ``backend_choice`` (``model.backend``: auto, torch, onnx,
    onnx-int8) picks the runtime of window models (:mod:`.onnx_window`); compact models
    always run their own numpy head.

    Raises DataError (one line naming the path) when the dir is missing or not a model.
    """
    path = Path(model_dir).expanduser()
    config = read_config(path)
    model_type = config["model_type"]
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if model_type == ensemble.MODEL_TYPE:
        backend = ensemble.load(path, config, threads,
                                lambda d, t: load_backend(d, t, backend_choice))
        logger.info("loaded ensemble %s of %d models", path, len(backend.members))
        return backend
    name = path.resolve().name
    _limit_blas(threads)
    try:
        if model_type == MODEL_TYPE:
            labels = _labels(config, path)
            backend: CompactBackend | HFBackend = CompactBackend(
                compact_numpy.load(path, config), config, name, labels, threads,
                _temperature(config, path), _frontend_weights(config, path))
            _verify_frontend(backend, config, path)
            # Load the front-end now: missing weights fail at start-up, not at the first
            # utterance, and the first event does not pay the load (~0.6 s for Whisper).
            frontends.embed_many(backend.frontend, [np.zeros(frontends.SAMPLE_RATE_HZ // 4,
                                                             dtype=np.float32)], threads,
                                 backend.frontend_weights)
        else:
            if not (path / "preprocessor_config.json").is_file():
                raise DataError(
                    f"{path} has no preprocessor_config.json (the feature extractor); {_EXPECTED}"
                )
            from intentd.daemon.model import onnx_window

            labels = _labels(config, path)
            temperature = _temperature(config, path)
            backend = onnx_window.load_window_model(  # type: ignore[assignment]
                path, name, labels, temperature, threads, backend_choice,
                lambda: _load_hf(path, name, labels, temperature, threads))
    except DataError:
        raise
    except Exception as err:  # corrupt weights raise anything from OSError to SafetensorError
        raise DataError(
            f"{path}: cannot load it as an audio-classification model ({_first_line(err)}); "
            f"{_EXPECTED}"
        ) from err
    logger.info(
        "loaded %s model %s: %d labels, %d Hz, score temperature %.3g, %d thread(s)",
        model_type, path, len(labels), backend.sample_rate_hz, backend.temperature, threads,
    )
    return backend
