"""``intentd-train export``: a window model's forward to ONNX, fp32 and dynamic int8, measured.

Writes ``DIR/onnx/model.onnx`` (``input_values [batch, samples]`` float32 -> logits, both
axes dynamic; torch's TorchScript exporter, which traces the eval-mode model), its dynamic
int8 copy ``DIR/onnx/model.int8.onnx`` (onnxruntime's ``quantize_dynamic`` on the MatMuls:
with the convolutions too, int8 ran slower than fp32 on wav2vec2-base), and
``DIR/onnx/export.json``: on this CPU, with ``--threads`` intra-op threads, the ms per 1 s
window of torch, onnx and onnx-int8 (median of repeats, warm-up excluded), the top-1
agreement of each ONNX variant with torch fp32 over 1 s windows (hop 0.5 s) of real speech
(``--windows-from``), and which variants the daemon may pick
(:func:`intentd.daemon.model.onnx_window.usable`). The daemon reads the record
(``model.backend: auto``, :mod:`intentd.daemon.model.onnx_window`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model import ensemble
from intentd.daemon.model import onnx_window as ow
from intentd.daemon.model.compact_numpy import MODEL_TYPE as COMPACT_TYPE

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is native from 17; torch 2.13's TorchScript exporter writes it
MAX_WINDOWS = 300  # agreement windows: enough for a 1% resolution, ~1 min per backend
AUDIO_SUFFIXES = (".wav", ".flac")
# A window counts as speech when its RMS is at least this share of its file's loudest
# window: a call's gaps (noise 15-25 dB under the speech) say nothing of the model.
SPEECH_RMS_SHARE = 0.25
TIME_BUDGET_S = 3.0  # per backend, after the warm-up
MIN_REPEATS, MAX_REPEATS, WARMUP = 5, 30, 2


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="a window model dir (wav2vec2-class AutoModelForAudioClassification)")
    parser.add_argument("--windows-from", type=Path, metavar="PATH",
                        help="a WAV/FLAC file or a folder of them (searched recursively, e.g. a "
                        "data dir from intentd-train synth): the speech the ONNX variants must "
                        "agree with torch on; without it int8 is not usable")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="intra-op threads while timing (default: %(default)s, as the "
                        "daemon's model.threads)")


def run_export(args: argparse.Namespace) -> int:
    record = export(args.model, args.windows_from, args.threads)
    print(json.dumps({"model": str(args.model), "cpu": record["cpu"],
                      "windows": record["windows"], "ms_per_window": record["ms_per_window"],
                      "agreement": record["agreement"], "usable": record["usable"]}))
    return 0


# ---------------------------------------------------------------- checks and audio


def check_window_model(model_dir: Path) -> dict[str, Any]:
    """``model_dir``'s config, when it is a model that export takes; DataError otherwise."""
    from intentd.daemon.model.loader import read_config

    config = read_config(model_dir)
    kind = config["model_type"]
    if kind == COMPACT_TYPE:
        raise DataError(f"{model_dir} is a compact model ({COMPACT_TYPE}), which runs without "
                        "torch already; export is for window models (wav2vec2-class)")
    if kind == ensemble.MODEL_TYPE:
        members = model_dir / ensemble.MEMBERS_SUBDIR
        raise DataError(f"{model_dir} is an ensemble; export each member instead "
                        f"(intentd-train export --model {members}/NAME)")
    pre = model_dir / "preprocessor_config.json"
    try:
        extractor = json.loads(pre.read_text(encoding="utf-8")).get("feature_extractor_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise DataError(f"{pre}: cannot read it ({err}); a window model dir has its feature "
                        "extractor's preprocessor_config.json") from err
    if extractor != ow.WAV2VEC2_EXTRACTOR:
        raise DataError(f"{model_dir}: its feature extractor is {extractor}; export takes "
                        f"raw-waveform models ({ow.WAV2VEC2_EXTRACTOR}: wav2vec2, HuBERT, "
                        "WavLM...); run this one with model.backend: torch")
    return config


def _audio_files(src: Path) -> list[Path]:
    if not src.exists():
        raise DataError(f"--windows-from {src}: no such file or folder")
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def speech_windows(src: Path, rate_hz: int, limit: int = MAX_WINDOWS) -> np.ndarray:
    """Up to ``limit`` 1 s windows (hop 0.5 s) of speech at ``rate_hz`` from the audio at
    ``src``, spread over its files and over each file's windows."""
    import soundfile as sf

    from intentd.daemon.audio.windowing import WindowSpec, cut_windows, preprocess

    files = _audio_files(src)
    if not files:
        raise DataError(f"--windows-from {src}: no .wav or .flac files in it; pass a data dir "
                        "made by intentd-train synth, or a recording")
    # Evenly spaced files: every intent and voice of a data dir counts, not the first few.
    picked = sorted({files[i] for i in np.linspace(0, len(files) - 1, min(len(files), limit))
                     .round().astype(int)})
    spec = WindowSpec(1.0, 0.5, rate_hz)
    found: list[np.ndarray] = []
    for path in picked:
        try:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (OSError, RuntimeError, sf.LibsndfileError) as err:
            raise DataError(f"{path}: cannot read it as audio ({err})") from err
        windows = cut_windows(preprocess(audio, rate, rate_hz), spec)
        rms = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1))
        if windows.shape[0] and rms.max() > 0:
            found.append(windows[rms >= SPEECH_RMS_SHARE * rms.max()])
    windows = np.concatenate(found) if found else np.zeros((0, spec.window_samples), np.float32)
    if windows.shape[0] == 0:
        raise DataError(f"--windows-from {src}: its audio is silent; pass speech")
    if windows.shape[0] > limit:
        windows = windows[np.linspace(0, windows.shape[0] - 1, limit).round().astype(int)]
    return windows


# ---------------------------------------------------------------- export


def export_onnx(model: Any, out: Path, rate_hz: int) -> None:
    """The model's forward (eval mode) to ``out``, written whole or not at all."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            return self.inner(input_values=input_values).logits

    wrapper = Logits(model).eval()
    example = torch.from_numpy(ow.WaveformPreprocessor(rate_hz, True)(
        np.random.default_rng(0).standard_normal((2, rate_hz)).astype(np.float32)))
    partial = out.with_name(out.name + ".partial")
    # The exporter warns that it is the legacy one and that traced Python bools may not
    # hold for other shapes; the check clips of every length measure that instead.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(partial), input_names=["input_values"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_values": {0: "batch", 1: "samples"},
                                        "logits": {0: "batch"}})
    model.eval()  # the exporter restores the wrapper's (training) mode on the model
    os.replace(partial, out)


def quantize_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = out.with_name(out.name + ".partial")
    root = logging.getLogger()
    level = root.level
    # The quantizer logs a line per tensor, and advice for static quantization, to root.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    os.replace(partial, out)


# ---------------------------------------------------------------- measurements


def ms_per_window(backend: Any, window: np.ndarray) -> float:
    """Median wall ms of one 1 s window through ``backend.classify_windows``."""
    batch = window[None].astype(np.float32)
    for _ in range(WARMUP):
        backend.classify_windows(batch)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < MIN_REPEATS or (len(times) < MAX_REPEATS
                                       and time.perf_counter() - start < TIME_BUDGET_S):
        t0 = time.perf_counter()
        backend.classify_windows(batch)
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2)


def _check_clips(rate_hz: int) -> list[np.ndarray]:
    """Speech-like clips of a window's length and of an odd utterance length: the exported
    graph must match torch on both (its samples axis is dynamic)."""
    rng = np.random.default_rng(0)
    clips = []
    for n in (rate_hz, round(1.37 * rate_hz) + 1):
        t = np.arange(n) / rate_hz
        tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
        clips.append((tone + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return clips


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def export(model_dir: Path, windows_from: Path | None, threads: int = 1) -> dict[str, Any]:
    """Export, quantize, measure and record (module docstring); the record."""
    import onnxruntime
    import torch

    from intentd.daemon.model.loader import HFBackend, load_backend

    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    check_window_model(model_dir)
    rate = ow.WaveformPreprocessor.from_dir(model_dir).sample_rate_hz
    # The audio first: a wrong path fails before seconds of loading.
    windows = None if windows_from is None else speech_windows(windows_from, rate)
    torch_backend = load_backend(model_dir, threads, "torch")
    assert isinstance(torch_backend, HFBackend)

    out = ow.onnx_dir(model_dir)
    out.mkdir(exist_ok=True)
    (out / ow.EXPORT_JSON).unlink(missing_ok=True)  # no record of half-written files
    t0 = time.monotonic()
    export_onnx(torch_backend.model, ow.variant_path(model_dir, "onnx"), rate)
    quantize_int8(ow.variant_path(model_dir, "onnx"), ow.variant_path(model_dir, "onnx-int8"))
    log.info("exported %s to %s in %.0f s", model_dir, out, time.monotonic() - t0)

    backends: dict[str, Any] = {"torch": torch_backend}
    for variant in ow.ONNX_VARIANTS:
        backends[variant] = ow.open_variant(model_dir, variant, torch_backend.name,
                                            torch_backend.labels, torch_backend.temperature,
                                            threads)
    clips = _check_clips(rate)
    ref = [torch_backend.classify_batch([c])[0] for c in clips]
    max_diff = {v: float(max(np.abs(backends[v].classify_batch([c])[0] - r).max()
                             for c, r in zip(clips, ref, strict=True)))
                for v in ow.ONNX_VARIANTS}

    agreement: dict[str, float | None] = dict.fromkeys(ow.ONNX_VARIANTS)
    if windows is None:
        log.info("no --windows-from: top-1 agreement with torch is not measured, so "
                 "onnx-int8 is not usable; onnx fp32 is if its probabilities match torch's")
    else:
        log.info("top-1 agreement over %d speech windows from %s", len(windows), windows_from)
        top = {name: b.classify_windows(windows).argmax(axis=1) for name, b in backends.items()}
        for variant in ow.ONNX_VARIANTS:
            agreement[variant] = round(float(np.mean(top[variant] == top["torch"])), 4)
    window = windows[0] if windows is not None else clips[0]
    ms = {name: ms_per_window(b, window) for name, b in backends.items()}
    record: dict[str, Any] = {
        "schema": ow.EXPORT_SCHEMA, "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__, "opset": OPSET, "cpu": cpu_model(), "threads": threads,
        "windows": 0 if windows is None else int(windows.shape[0]),
        "windows_from": None if windows_from is None else str(windows_from),
        "ms_per_window": ms, "agreement": agreement,
        "max_prob_diff": {v: round(d, 7) for v, d in max_diff.items()},
        "usable": ow.usable(ms, agreement, max_diff["onnx"]),
        "files": dict(ow.VARIANT_FILES), "source_sha256": ow.weights_sha256(model_dir),
    }
    partial = out / (ow.EXPORT_JSON + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, out / ow.EXPORT_JSON)
    log.info("%s: ms per 1 s window torch %s, onnx %s, onnx-int8 %s; agreement onnx %s, "
             "onnx-int8 %s; usable %s", out / ow.EXPORT_JSON, ms["torch"], ms["onnx"],
             ms["onnx-int8"], agreement["onnx"], agreement["onnx-int8"], record["usable"])
    return record
