"""Window models (wav2vec2-class ``AutoModelForAudioClassification`` dirs) on ONNX Runtime,
and the choice of backend for them (``model.backend``).

``intentd-train export --model DIR`` (:mod:`intentd.trainer.tuning.export`) writes
``DIR/onnx/model.onnx`` (the model's forward, fp32), ``DIR/onnx/model.int8.onnx`` (dynamic
int8 weights) and ``DIR/onnx/export.json``: the ms per 1 s window of torch, onnx and
onnx-int8 on the exporting CPU, the top-1 agreement of each ONNX variant with torch fp32 on
real speech windows, and which variants are usable (:func:`usable`). :func:`choose` turns
``model.backend`` and that record into the backend that runs.

:class:`OnnxWindowBackend` has :class:`intentd.daemon.model.loader.HFBackend`'s surface and
results, with no torch or transformers: ``Wav2Vec2FeatureExtractor``'s preprocessing
(per-clip zero mean / unit variance) in numpy, then the ONNX graph, then the softmax of the
logits over the model's score temperature. This module imports neither torch nor
transformers (tests/test_onnx_window.py checks it with both blocked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.model.backend import WINDOW_BATCH, CollectingScorer

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")  # model.backend
ONNX_VARIANTS = ("onnx", "onnx-int8")
ONNX_SUBDIR = "onnx"
VARIANT_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_JSON = "export.json"
EXPORT_SCHEMA = 1
MIN_AGREEMENT = 0.99  # top-1 agreement with torch fp32 a variant needs to be usable
# fp32 ONNX against torch on the export's check windows: float reordering gives ~1e-6;
# more means the graph is not the model (a traced branch that does not hold for all inputs).
MAX_PROB_DIFF = 1e-3
WAV2VEC2_EXTRACTOR = "Wav2Vec2FeatureExtractor"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what the export was made from
_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's epsilon


def onnx_dir(model_dir: Path) -> Path:
    return model_dir / ONNX_SUBDIR


def variant_path(model_dir: Path, variant: str) -> Path:
    return onnx_dir(model_dir) / VARIANT_FILES[variant]


# ---------------------------------------------------------------- the export record


def usable(ms: Mapping[str, float], agreement: Mapping[str, float | None],
           max_prob_diff: float) -> dict[str, bool]:
    """Which ONNX variants may run in place of torch.

    fp32: its probabilities match torch's on the check windows, and when agreement was
    measured it is >= MIN_AGREEMENT. int8: its agreement was measured and is >=
    MIN_AGREEMENT, and it is faster than fp32 on this CPU (on a CPU without fast int8
    products it is not, and then it only costs accuracy)."""
    fp32_agree, int8_agree = agreement.get("onnx"), agreement.get("onnx-int8")
    fp32 = max_prob_diff <= MAX_PROB_DIFF and (fp32_agree is None or fp32_agree >= MIN_AGREEMENT)
    int8 = (int8_agree is not None and int8_agree >= MIN_AGREEMENT
            and ms["onnx-int8"] < ms["onnx"])
    return {"onnx": fp32, "onnx-int8": int8}


def read_export(model_dir: Path) -> dict[str, Any] | None:
    """``DIR/onnx/export.json``, or None when the model was not exported."""
    path = onnx_dir(model_dir) / EXPORT_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read it as JSON ({err}); run `intentd-train export "
                        f"--model {model_dir}` again") from err
    if not isinstance(data, dict) or data.get("schema") != EXPORT_SCHEMA \
            or not isinstance(data.get("usable"), dict):
        raise DataError(f"{path}: not an export record of this intentd (schema "
                        f"{EXPORT_SCHEMA}); run `intentd-train export --model {model_dir}` again")
    return data


def choose(requested: str, export: Mapping[str, Any] | None) -> str:
    """The backend that runs a window model: ``requested`` (one of BACKENDS), with ``auto``
    resolved from the export record: onnx-int8 if usable, else onnx if usable, else torch."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested != "auto":
        return requested
    ok = (export or {}).get("usable", {})
    return next((v for v in ("onnx-int8", "onnx") if ok.get(v) is True), "torch")


def shortfall(variant: str, export: Mapping[str, Any]) -> str:
    """Why the record says ``variant`` is not usable, with its figures (for a warning)."""
    ms = export.get("ms_per_window", {})
    agree = export.get("agreement", {}).get(variant)
    n, cpu = export.get("windows", 0), export.get("cpu", "unknown CPU")
    if agree is None:
        what = "its agreement with torch was not measured (exported without --windows-from)"
    else:
        what = f"it agreed with torch fp32 on {100 * agree:.1f}% of {n} windows"
    if variant == "onnx-int8":
        what += (f"; it took {ms.get('onnx-int8')} ms per window against "
                 f"{ms.get('onnx')} ms for onnx fp32 on {cpu}")
    return what


def weights_sha256(model_dir: Path) -> dict[str, str]:
    """sha256 of the torch weight files in ``model_dir`` (~0.3 s for wav2vec2-base)."""
    from intentd.daemon.model import checksums  # torch-free; cached per file

    return {name: checksums.sha256(model_dir / name) for name in WEIGHT_FILES
            if (model_dir / name).is_file()}


def _check_fresh(model_dir: Path, export: Mapping[str, Any]) -> None:
    """The ONNX files were exported from the weights in the dir now (a re-fit into the same
    dir would otherwise run the old model). A dir shipped without its torch weights (to
    run on ONNX only) cannot be checked."""
    recorded = export.get("source_sha256") or {}
    now = weights_sha256(model_dir)
    for name, sha in now.items():
        if name in recorded and recorded[name] != sha:
            raise DataError(f"{onnx_dir(model_dir)}: exported from other weights than "
                            f"{model_dir / name} holds now (re-saved since); run `intentd-train "
                            f"export --model {model_dir}` again, or delete {onnx_dir(model_dir)}")
    if not now:
        logger.info("%s has no torch weights beside its ONNX export, so the export's "
                    "source is not verified", model_dir)


# ---------------------------------------------------------------- preprocessing and model


@dataclass(frozen=True)
class WaveformPreprocessor:
    """``Wav2Vec2FeatureExtractor`` on clips of equal length: float32, and with
    ``do_normalize`` each clip to zero mean and unit variance over its own samples.

    No padding and no attention mask: HF's extractor normalizes after padding, and for
    wav2vec2-base (``return_attention_mask`` False) over the padding too, so a padded clip's
    result would depend on its batch-mates. Clips of unequal length run one at a time
    instead (:meth:`OnnxWindowBackend.classify_batch`), which is what one clip gets from HF;
    a batch of equal length (the 1 s windows) needs no padding, and its all-ones mask
    changes nothing."""

    sample_rate_hz: int
    do_normalize: bool

    @classmethod
    def from_dir(cls, model_dir: Path) -> WaveformPreprocessor:
        path = model_dir / "preprocessor_config.json"
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read it ({err}); re-save the model with its "
                            "feature extractor") from err
        kind = cfg.get("feature_extractor_type") if isinstance(cfg, dict) else None
        if kind != WAV2VEC2_EXTRACTOR or cfg.get("feature_size", 1) != 1:
            raise DataError(f"{model_dir}: its feature extractor is {kind}, which the onnx "
                            f"backend does not implement (only {WAV2VEC2_EXTRACTOR}, raw "
                            "waveform); pip install 'intentd[torch]' and set model.backend: "
                            "torch")
        rate = cfg.get("sampling_rate", 16000)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise DataError(f"{path}: sampling_rate must be a positive integer, got {rate!r}")
        return cls(sample_rate_hz=rate, do_normalize=bool(cfg.get("do_normalize", True)))

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        x = np.array(clips, dtype=np.float32)  # a copy: normalized in place below
        if self.do_normalize:
            for row in x:  # per clip, in float32, as HF computes it
                row -= row.mean()
                row /= np.sqrt(row.var() + _NORM_EPS)
        return x


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def session_options(threads: int) -> Any:  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    # Idle pool threads would spin between windows, taking CPU from the other streams.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # ORT prints shape-inference warnings to stderr otherwise
    return opts


class OnnxWindowBackend:
    """An exported window model on ONNX Runtime (``variant`` onnx or onnx-int8)."""

    def __init__(self, onnx_path: Path, preprocess: WaveformPreprocessor, name: str,
                 labels: tuple[str, ...], temperature: float = 1.0, threads: int = 1,
                 variant: str = "onnx") -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=session_options(
                threads), providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
            text = str(err).strip().splitlines()
            raise DataError(f"{onnx_path}: onnxruntime cannot load it ({text[0] if text else err!r}"
                            f"); run `intentd-train export --model {onnx_path.parent.parent}` "
                            "again") from err
        self._input = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(labels):
            raise DataError(f"{onnx_path}: gives {n_out} logits but the model has "
                            f"{len(labels)} labels; run `intentd-train export --model "
                            f"{onnx_path.parent.parent}` again")
        self.preprocess = preprocess
        self.name = name
        self.labels = labels
        self.temperature = temperature
        self.sample_rate_hz = preprocess.sample_rate_hz
        self.streams_audio = False  # the scorer collects the utterance, runs at its end
        self.variant = variant

    def _run(self, clips: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self._input: self.preprocess(clips)})
        return _softmax(logits, self.temperature)

    def classify_batch(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Clips -> probabilities ``[n, n_labels]``, each row as that clip alone scores."""
        clips = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        if not clips:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if len({c.size for c in clips}) == 1:
            return self._run(np.stack(clips))
        return np.concatenate([self._run(c[None]) for c in clips])

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate([self._run(w[s : s + WINDOW_BATCH])
                               for s in range(0, w.shape[0], WINDOW_BATCH)])

    def utterance_scorer(self) -> CollectingScorer:
        return CollectingScorer(self)


# ---------------------------------------------------------------- loading


def open_variant(model_dir: Path, variant: str, name: str, labels: tuple[str, ...],
                 temperature: float, threads: int) -> OnnxWindowBackend:
    """The exported ``variant`` of ``model_dir``; DataError when it was not exported."""
    path = variant_path(model_dir, variant)
    if not path.is_file():
        raise DataError(f"{model_dir}: no ONNX export ({path} is missing), so backend "
                        f"{variant} cannot run it; run `intentd-train export --model "
                        f"{model_dir}`, or set model.backend: auto or torch")
    return OnnxWindowBackend(path, WaveformPreprocessor.from_dir(model_dir), name, labels,
                             temperature, threads, variant)


def load_window_model(model_dir: Path, name: str, labels: tuple[str, ...], temperature: float,
                      threads: int, requested: str, load_torch: Callable[[], Any]) -> Any:
    """The backend for a window model dir: ``requested`` (BACKENDS) resolved by
    :func:`choose`; ``load_torch()`` builds the transformers one when torch is chosen."""
    export = None if requested == "torch" else read_export(model_dir)
    chosen = choose(requested, export)
    why = "" if requested != "auto" else (
        " (auto: no ONNX export)" if export is None else " (auto: from onnx/export.json)")
    if chosen == "torch":
        if requested == "auto" and export is not None:
            logger.info("%s: no ONNX variant is usable (onnx: %s); running it on torch",
                        model_dir, shortfall("onnx", export))
        logger.info("window model %s on backend torch%s", model_dir, why)
        return load_torch()
    if export is None:
        raise DataError(f"{model_dir}: no ONNX export ({onnx_dir(model_dir) / EXPORT_JSON} is "
                        f"missing), so backend {chosen} cannot run it; run `intentd-train "
                        f"export --model {model_dir}`, or set model.backend: auto or torch")
    if not export["usable"].get(chosen):
        logger.warning("%s: backend %s is asked for, but its export did not qualify it: %s; "
                       "running it anyway", model_dir, chosen, shortfall(chosen, export))
    _check_fresh(model_dir, export)
    backend = open_variant(model_dir, chosen, name, labels, temperature, threads)
    ms = export.get("ms_per_window", {})
    logger.info("window model %s on backend %s%s: %s ms per 1 s window at export (torch %s) "
                "on %s", model_dir, chosen, why, ms.get(chosen), ms.get("torch"),
                export.get("cpu", "an unknown CPU"))
    return backend
