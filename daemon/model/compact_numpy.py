"""The compact head's inference in numpy: what the daemon runs, with no torch or transformers.

:class:`NumpyCompactHead` reads a saved compact model dir (``config.json`` +
``model.safetensors``) and computes the same logits as
:class:`intentd.daemon.model.compact.CompactForAudioClassification` in eval mode (dropout and
augmentation off), layer by layer: input LayerNorm -> projection -> ``keyword_cnn``
(parallel 1-D convolutions, max/mean pooling) or ``gru_attention`` (separable conv blocks,
bidirectional GRU, attention pooling) -> linear, and the slot heads. Agreement with torch
within 1e-4 is tested for both heads and both front-ends (tests/test_compact_numpy.py).

Why numpy rather than an ONNX export of the head: the head is 0.3-1.2 M parameters over at
most a few hundred frames, a dozen small matrix products; numpy does them in well under a
millisecond, reads the weights the trainer already saves (no export step, every existing
model dir runs as it is), and keeps the padded-batch masking exactly as written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.model import slots

MODEL_TYPE = "intentd-compact"  # config.json's model_type of a compact model
WEIGHTS_FILE = "model.safetensors"
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which the head uses
_NEG = np.finfo(np.float32).min
_SQRT1_2 = 1.0 / math.sqrt(2.0)

Weights = dict[str, np.ndarray]


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, float32's own resolution near
    1): numpy has no erf, and scipy.special would be the daemon's only use of scipy."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                                                        + t * (-1.453152027 + t * 1.061405429))))
    return np.copysign(1.0 - poly * np.exp(-a * a), x)


def gelu(x: np.ndarray) -> np.ndarray:
    """torch's default (exact, erf-based) GELU."""
    return (0.5 * x * (1.0 + erf(x * _SQRT1_2))).astype(np.float32, copy=False)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


def linear(x: np.ndarray, w: Weights, name: str) -> np.ndarray:
    y = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return y if bias is None else y + bias


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int = 1,
           groups: int = 1) -> np.ndarray:
    """torch's ``Conv1d`` with ``padding=k // 2`` on time-major ``x`` [B, T, C_in]:
    [B, ceil(T / stride), C_out]. ``groups`` is 1 or C_in (depthwise)."""
    b, t, c_in = x.shape
    c_out, _, k = weight.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    starts = np.arange(0, t, stride)
    if groups == 1:  # all k taps as one product: [B, T', k * C_in] @ [k * C_in, C_out]
        cols = np.concatenate([xp[:, starts + j, :] for j in range(k)], axis=2)
        y = cols @ weight.transpose(2, 1, 0).reshape(k * c_in, c_out)
    else:  # depthwise: each channel its own filter
        y = np.zeros((b, starts.size, c_out), dtype=np.float32)
        for j in range(k):
            y += xp[:, starts + j, :] * weight[:, 0, j]
    return y if bias is None else y + bias


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention_pool(h: np.ndarray, mask: np.ndarray, w: Weights, name: str) -> np.ndarray:
    """:class:`~intentd.daemon.model.compact_layers.AttentionPool`: [B, T, H] -> [B, H]."""
    scores = linear(np.tanh(linear(h, w, f"{name}.score.0")), w, f"{name}.score.2")
    scores = np.where(mask[:, :, None], scores, _NEG)  # [B, T, heads]
    weights = _softmax(scores, axis=1)
    pooled = np.einsum("btk,bth->bkh", weights, h)
    flat = pooled.reshape(pooled.shape[0], -1)
    return linear(flat, w, f"{name}.mix") if f"{name}.mix.weight" in w else flat


def _gru_direction(x: np.ndarray, length: int, w: Weights, suffix: str,
                   reverse: bool) -> np.ndarray:
    """One direction of torch's GRU over the first ``length`` frames of ``x`` [T, H]."""
    w_ih, w_hh = w[f"gru.weight_ih_l0{suffix}"], w[f"gru.weight_hh_l0{suffix}"]
    b_ih, b_hh = w[f"gru.bias_ih_l0{suffix}"], w[f"gru.bias_hh_l0{suffix}"]
    g = w_hh.shape[1]
    gi = x[:length] @ w_ih.T + b_ih  # input terms of every step at once
    out = np.zeros((x.shape[0], g), dtype=np.float32)
    h = np.zeros(g, dtype=np.float32)
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        gh = w_hh @ h + b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[t, :g] + gh[:g])))
        z = 1.0 / (1.0 + np.exp(-(gi[t, g : 2 * g] + gh[g : 2 * g])))
        n = np.tanh(gi[t, 2 * g :] + r * gh[2 * g :])
        h = (1.0 - z) * n + z * h
        out[t] = h
    return out


@dataclass(frozen=True)
class HeadShape:
    """What the forward pass needs from ``config.json`` (the rest only matters to training)."""

    head_type: str
    embedding_dim: int
    kernel_count: int
    conv_stride: int
    block_count: int
    has_gru: bool
    subtract_utterance_mean: bool


def _shape(config: dict[str, Any], w: Weights, path: Path) -> HeadShape:
    head_type = config.get("head_type", "keyword_cnn")
    if head_type not in ("keyword_cnn", "gru_attention"):
        raise DataError(f"{path / 'config.json'}: unknown head_type {head_type!r}; this "
                        "version runs keyword_cnn and gru_attention heads")
    blocks = sorted({int(k.split(".")[1]) for k in w if k.startswith("blocks.")})
    gru = [i for i in blocks if f"blocks.{i}.gru.weight_ih_l0" in w]
    kernels = sorted({int(k.split(".")[2]) for k in w if k.startswith("pool.convs.")})
    return HeadShape(
        head_type=head_type,
        embedding_dim=int(w["input_norm.weight"].shape[0]),
        kernel_count=len(kernels),
        conv_stride=int(config.get("conv_stride", 1)),
        block_count=len(blocks) - len(gru),
        has_gru=bool(gru),
        # Off for models saved before the option existed (their configs lack it).
        subtract_utterance_mean=bool(config.get("subtract_utterance_mean", False)),
    )


def read_weights(path: Path) -> Weights:
    """The head's tensors from ``model.safetensors`` as float32 arrays."""
    file = path / WEIGHTS_FILE
    if not file.is_file():
        old = [p.name for p in path.glob("pytorch_model*.bin")]
        hint = (f"it has {old[0]} (torch's pickle format): load and re-save it with "
                "`intentd-train` from intentd[train] to write model.safetensors"
                if old else "copy the whole model dir, or re-run intentd-train fit")
        raise DataError(f"{path}: no {WEIGHTS_FILE} (the head's weights); {hint}")
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(file))
    except Exception as err:  # a truncated or foreign file: safetensors raises its own types
        raise DataError(f"{file}: cannot read it as safetensors ({err}); copy the model dir "
                        "again or re-run intentd-train fit") from err
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items()}


class NumpyCompactHead:
    """Embeddings [B, T, dim] + mask [B, T] -> intent logits [B, n] and slot logits."""

    def __init__(self, config: dict[str, Any], weights: Weights, path: Path) -> None:
        try:
            self.shape = _shape(config, weights, path)
            self.slot_space = slots.SlotSpace.from_config(config.get("slot_values"),
                                                          config.get("intent_slots"))
        except (KeyError, IndexError, ValueError) as err:
            raise DataError(f"{path}: its weights do not match a compact head ({err}); copy "
                            "the model dir again or re-run intentd-train fit") from err
        self.w = weights
        self.has_slot_heads = self.slot_space is not None and any(
            k.startswith("slot_heads.") for k in weights)

    @property
    def embedding_dim(self) -> int:
        return self.shape.embedding_dim

    def __call__(self, x: np.ndarray, mask: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        w, shape = self.w, self.shape
        x = np.asarray(x, dtype=np.float32)
        mask = np.asarray(mask).astype(bool)
        mask[:, 0] |= ~mask.any(axis=1)  # a row with no valid frame pools its first
        m = mask[:, :, None].astype(np.float32)
        if shape.subtract_utterance_mean:
            x = x - (x * m).sum(axis=1, keepdims=True) / np.maximum(m.sum(axis=1,
                                                                          keepdims=True), 1.0)
        x = layer_norm(x, w["input_norm.weight"], w["input_norm.bias"]) * m
        h = linear(x, w, "projection") * m
        if shape.head_type == "keyword_cnn":
            return self._keyword_cnn(h, mask)
        return self._gru_attention(h, mask)

    def _keyword_cnn(self, h: np.ndarray, mask: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        w, stride = self.w, self.shape.conv_stride
        x = gelu(h)
        ys = [gelu(conv1d(x, w[f"pool.convs.{i}.weight"], w[f"pool.convs.{i}.bias"], stride))
              for i in range(self.shape.kernel_count)]
        valid = mask[:, ::stride]  # [B, T']
        vm = valid[:, :, None]
        count = valid.sum(axis=1, keepdims=True).astype(np.float32)
        pooled = []
        for y in ys:
            pooled.append(np.where(vm, y, _NEG).max(axis=1))
            pooled.append((y * vm).sum(axis=1) / count)
        logits = linear(np.concatenate(pooled, axis=1), w, "classifier")
        slot_logits = (self._slot_heads(np.concatenate(ys, axis=2), valid)
                       if self.has_slot_heads else None)
        return logits, slot_logits

    def _gru_attention(self, h: np.ndarray, mask: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        w = self.w
        m = mask[:, :, None].astype(np.float32)
        for i in range(self.shape.block_count):
            p = f"blocks.{i}"
            y = conv1d(h, w[f"{p}.depthwise.weight"], w[f"{p}.depthwise.bias"],
                       groups=h.shape[2])
            y = conv1d(y, w[f"{p}.pointwise.weight"], w[f"{p}.pointwise.bias"])
            h = layer_norm(h + gelu(y), w[f"{p}.norm.weight"], w[f"{p}.norm.bias"]) * m
        if self.shape.has_gru:
            p = f"blocks.{self.shape.block_count}"
            sub = {k[len(p) + 1 :]: v for k, v in w.items() if k.startswith(p + ".")}
            lengths = mask.sum(axis=1)
            both = np.stack([
                np.concatenate([_gru_direction(h[b], int(n), sub, "", reverse=False),
                                _gru_direction(h[b], int(n), sub, "_reverse", reverse=True)],
                               axis=1)
                for b, n in enumerate(lengths)])
            h = layer_norm(h + linear(both, sub, "out"), sub["norm.weight"],
                           sub["norm.bias"]) * m
        logits = linear(attention_pool(h, mask, w, "pool"), w, "classifier")
        slot_logits = self._slot_heads(h, mask) if self.has_slot_heads else None
        return logits, slot_logits

    def _slot_heads(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """:class:`~intentd.daemon.model.compact_layers.SlotHeads`: concatenated logits."""
        assert self.slot_space is not None
        w = self.w
        z = gelu(linear(frames, w, "slot_heads.bottleneck.0")) * mask[:, :, None]
        return np.concatenate(
            [linear(attention_pool(z, mask, w, f"slot_heads.pools.{i}"), w,
                    f"slot_heads.classifiers.{i}")
             for i in range(len(self.slot_space.sizes))], axis=1)


def load(path: Path, config: dict[str, Any]) -> NumpyCompactHead:
    return NumpyCompactHead(config, read_weights(path), path)
