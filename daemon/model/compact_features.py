"""The compact model's feature extractor: raw audio through its frozen front-end.

Registered with ``AutoFeatureExtractor`` together with the model (:func:`.compact.register`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor

from intentd.daemon.model import embedding, frontends

logger = logging.getLogger(__name__)


def _as_utterances(raw_speech: Any) -> list[np.ndarray]:
    """Array, batch array, tensor, list of floats or list of arrays -> list of 1-D float32."""
    if isinstance(raw_speech, torch.Tensor):
        raw_speech = raw_speech.detach().cpu().numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim == 1:
            return [raw_speech.astype(np.float32, copy=False)]
        if raw_speech.ndim == 2:
            return [row.astype(np.float32, copy=False) for row in raw_speech]
        raise ValueError(
            f"raw_speech must be [samples] or [batch, samples] mono audio, got {raw_speech.shape}"
        )
    if isinstance(raw_speech, list | tuple):
        if len(raw_speech) == 0:
            raise ValueError("raw_speech is an empty list: nothing to embed")
        if np.isscalar(raw_speech[0]):
            return [np.asarray(raw_speech, dtype=np.float32)]
        out = []
        for i, item in enumerate(raw_speech):
            if isinstance(item, torch.Tensor):
                item = item.detach().cpu().numpy()
            a = np.asarray(item, dtype=np.float32)
            if a.ndim != 1:
                raise ValueError(f"raw_speech[{i}] must be mono 1-D audio, got shape {a.shape}")
            out.append(a)
        return out
    raise TypeError(f"raw_speech must be an array or a list of arrays, got {type(raw_speech)}")


class CompactFeatureExtractor(SequenceFeatureExtractor):
    """Raw 16 kHz mono audio -> padded ``input_values`` [B, T, dim] + ``attention_mask`` [B, T],
    through the model's front-end (:mod:`intentd.daemon.model.frontends`)."""

    model_input_names = ["input_values", "attention_mask"]  # noqa: RUF012 (transformers API)

    def __init__(
        self,
        feature_size: int = embedding.EMBEDDING_DIM,
        sampling_rate: int = embedding.SAMPLE_RATE_HZ,
        padding_value: float = 0.0,
        threads: int = 1,
        frontend: str = frontends.SPEECH_EMBEDDING,
        frontend_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("return_attention_mask", True)
        self.frontend = frontends.check(frontend)
        # A tuned encoder in the model dir (see CompactConfig); from_pretrained resolves it.
        self.frontend_weights = frontend_weights
        self.weights_dir: Path | None = None
        super().__init__(
            feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value,
            **kwargs,
        )
        self.threads = threads

    def __call__(
        self,
        raw_speech: Any,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if sampling_rate is None:
            logger.warning(
                "CompactFeatureExtractor called without sampling_rate; assuming %d Hz",
                self.sampling_rate,
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio is sampled at {sampling_rate} Hz but this model needs "
                f"{self.sampling_rate} Hz mono; resample first "
                "(intentd.daemon.audio.windowing.preprocess(audio, rate, 16000))"
            )
        if self.frontend_weights and self.weights_dir is None:
            raise ValueError(
                f"this model's front-end is a tuned encoder ({self.frontend_weights}/ in its "
                "dir); load the extractor with from_pretrained(MODEL_DIR)")
        embeddings = frontends.embed_many(self.frontend, _as_utterances(raw_speech),
                                          threads=self.threads, weights=self.weights_dir)
        return self.pad_embeddings(
            embeddings, return_tensors=return_tensors, padding=padding, max_length=max_length,
            truncation=truncation, pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> Any:
        extractor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        # A tuple when called with return_unused_kwargs=True.
        first = extractor[0] if isinstance(extractor, tuple) else extractor
        if first.frontend_weights:
            base = Path(pretrained_model_name_or_path)
            if not base.is_dir():  # a Hub id: fetch the tuned encoder beside the config
                from huggingface_hub import snapshot_download

                base = Path(snapshot_download(str(pretrained_model_name_or_path),
                                              allow_patterns=[f"{first.frontend_weights}/*"]))
            first.weights_dir = base / first.frontend_weights
        return extractor

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("weights_dir", None)  # where this copy was loaded from, not a setting
        return out

    def pad_embeddings(
        self,
        embeddings: list[np.ndarray],
        return_tensors: str | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
    ) -> BatchFeature:
        """Pad precomputed ``[T_i, 96]`` embeddings (e.g. a trainer's cache) into a batch."""
        batch = BatchFeature({"input_values": [np.asarray(e, np.float32) for e in embeddings]})
        return self.pad(
            batch, padding=padding, max_length=max_length, truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=(
                self.return_attention_mask if return_attention_mask is None
                else return_attention_mask
            ),
            return_tensors=return_tensors,
        )
