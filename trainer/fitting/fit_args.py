"""The arguments of ``intentd-train fit``: three frozen dataclasses, one ``--flag`` per field.

Kept apart from :mod:`intentd.trainer.fitting.fit` so the flags (and their help) can be read without
the training code; the layout follows HF's ``run_audio_classification.py`` (data, model and
training arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "facebook/wav2vec2-base"


@dataclass(frozen=True)
class DataArguments:
    data: str = field(metadata={
        "metavar": "SRC", "help": "audiofolder dir, CSV manifest (path,label[,split]) or "
                                  "Hugging Face dataset id (e.g. PolyAI/minds14)"})
    data_config: str | None = field(default=None, metadata={"help": "HF dataset config "
                                                                    "(e.g. en-US)"})
    audio_column: str = field(default="audio", metadata={"help": "HF dataset audio column"})
    label_column: str = field(default="label", metadata={"help": "HF dataset label column, "
                                                                 "e.g. intent_class"})
    test_fraction: float = field(default=0.2, metadata={"help": "held-out share when SRC has "
                                                                "no test split"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow HF dataset scripts"})
    window_s: float = field(default=1.0, metadata={"help": "window length (seconds)"})
    hop_s: float = field(default=0.5, metadata={"help": "window hop (seconds)"})


@dataclass(frozen=True)
class ModelArguments:
    model: str = field(default=DEFAULT_MODEL, metadata={
        "metavar": "M", "help": "'compact', a local model dir, or a HF Hub model id"})
    freeze_feature_encoder: bool = field(default=True, metadata={
        "help": "freeze the CNN feature encoder of wav2vec2-style models"})
    frontend: str = field(default="whisper_tiny_en", metadata={
        "metavar": "F", "help": "compact: the frozen front-end, 'whisper_tiny_en' (Whisper "
                                "tiny.en's encoder, the default) or 'speech_embedding' (96-d "
                                "keyword-spotting embeddings: faster, less accurate)"})
    head_channels: int = field(default=256, metadata={
        "metavar": "N", "help": "compact: channels of the head's convolutions; on Whisper 128 "
                                "trains ~1.8x faster for ~0.7 point less on held-out voices "
                                "and more in heavy noise"})


@dataclass(frozen=True)
class TrainArguments:
    out: str = field(metadata={
        "metavar": "DIR", "help": "output dir: model, report.json, checkpoints/, cache/"})
    epochs: float | None = field(default=None, metadata={"help": "epochs (default: 15; compact "
                                                                  "10, at least 300 steps)"})
    learning_rate: float | None = field(default=None, metadata={"help": "peak LR (default: "
                                                                        "5e-5 / 2e-3 compact)"})
    batch_size: int | None = field(default=None, metadata={"help": "effective batch (default: "
                                                                   "32 / 64 compact)"})
    per_device_batch_size: int | None = field(default=None, metadata={
        "help": "batch per step; gradient accumulation makes up --batch-size"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "linear warm-up share"})
    weight_decay: float | None = field(default=None, metadata={
        "help": "AdamW weight decay (default: 0.01 / 0.05 compact)"})
    augment: bool = field(default=True, metadata={"help": "compact: crop/noise augmentation"})
    window_eval: bool = field(default=True, metadata={
        "help": "compact: also score the held-out utterances' 1 s windows (what the mean/max "
                "verdicts see); embeds every test window"})
    calibrate: bool = field(default=True, metadata={
        "help": "compact: fit a score temperature on the held-out (test + noisy) utterances"})
    seed: int = field(default=42, metadata={"help": "random seed (split, init, shuffling)"})
    threads: int = field(default=2, metadata={"help": "embedding workers; torch CPU threads for "
                                                      "window models"})
    torch_threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: --threads; 1 for the compact gru_attention head, "
                "whose small recurrent ops only lose time syncing threads)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (best included)"})
    resume: bool = field(default=False, metadata={"help": "resume from the last checkpoint in "
                                                          "OUT/checkpoints"})
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU even if a GPU exists"})
    push_to_hub: bool = field(default=False, metadata={"help": "push the model to the HF Hub"})
    hub_model_id: str | None = field(default=None, metadata={"help": "HF Hub repo id for "
                                                                     "--push-to-hub"})


_GROUPS = (DataArguments, ModelArguments, TrainArguments)


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per dataclass field (as HfArgumentParser does)."""
    for cls in _GROUPS:
        group = parser.add_argument_group(cls.__name__.removesuffix("Arguments").lower())
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            typ = hints[f.name]
            required = f.default is dataclasses.MISSING
            kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
            if typ is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
                kwargs["default"] = f.default
            else:
                base = next((a for a in typing.get_args(typ) if a is not type(None)), typ)
                metavar = f.metadata.get("metavar", f.name.upper())
                kwargs.update(type=base, required=required, metavar=metavar)
                if not required:
                    kwargs["default"] = f.default
                    if f.default is not None:
                        kwargs["help"] += " (default: %(default)s)"
            group.add_argument(flag, **kwargs)


def split_args(args: argparse.Namespace) -> tuple[DataArguments, ModelArguments, TrainArguments]:
    ns = vars(args)
    out = []
    for cls in _GROUPS:
        out.append(cls(**{f.name: ns[f.name] for f in dataclasses.fields(cls)}))
    return out[0], out[1], out[2]
