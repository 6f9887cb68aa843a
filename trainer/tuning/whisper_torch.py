"""Whisper tiny.en's encoder in torch, read from and written back to CTranslate2 weights.

The daemon runs the encoder in CTranslate2 (``intentd.daemon.model.frontend_whisper``); fine-tuning
its top layers (``intentd.trainer.tuning.tune_encoder``) needs it in torch. Both directions go
through the ``model.bin`` format itself (``ctranslate2/specs/model_spec.py``: a version, a spec name
and revision, then named arrays and aliases), so a tuned encoder is written as a complete
CTranslate2 Whisper model dir (decoder untouched) that the daemon loads like the stock one.
:class:`SplitEncoder` cuts it where tuning starts, so the frozen part runs once per clip.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from intentd.daemon.errors import DataError

# The DataType enum order of include/ctranslate2/types.h.
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_PREFIX = "encoder/"
POOL_FRAMES = 4  # as intentd.daemon.model.frontend_whisper: 20 ms states averaged to 80 ms


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        n = self.take("H")
        text = self.data[self.pos : self.pos + n - 1].decode("utf-8")
        self.pos += n
        return text


def _variables(data: bytes) -> list[tuple[str, list[int], str, int, int]]:
    """``(name, shape, dtype, offset, n_bytes)`` of every array in a model.bin."""
    r = _Reader(data)
    r.take("I")  # binary version
    r.string()  # spec name
    r.take("I")  # spec revision
    out = []
    for _ in range(r.take("I")):
        name = r.string()
        shape = [r.take("I") for _ in range(r.take("B"))]
        dtype = _DTYPES[r.take("B")]
        n_bytes = r.take("I")
        out.append((name, shape, dtype, r.pos, n_bytes))
        r.pos += n_bytes
    return out


def read_encoder(model_bin: Path) -> dict[str, np.ndarray]:
    """The encoder's arrays (float32), keyed by CTranslate2 name without ``encoder/``."""
    try:
        data = Path(model_bin).read_bytes()
        found = {}
        for name, shape, dtype, offset, n_bytes in _variables(data):
            if not name.startswith(_PREFIX) or dtype == "bfloat16":
                continue
            arr = np.frombuffer(data, dtype=dtype, count=n_bytes // np.dtype(dtype).itemsize,
                                offset=offset)
            found[name[len(_PREFIX):]] = arr.reshape(shape).astype(np.float32)
    except (OSError, struct.error, IndexError, ValueError) as err:
        raise DataError(f"{model_bin}: not a readable CTranslate2 model.bin ({err})") from err
    if "conv1/weight" not in found:
        raise DataError(f"{model_bin}: no Whisper encoder in it")
    return found


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + GELU MLP, as in Whisper (k has no bias: it is 0 in the
    fused qkv bias CTranslate2 stores)."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        bias = None
        if key_mask is not None:  # padded keys get no attention
            bias = torch.zeros(b, 1, 1, t, dtype=x.dtype, device=x.device)
            bias.masked_fill_(~key_mask[:, None, None, :], float("-inf"))
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=bias)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class WhisperEncoder(nn.Module):
    def __init__(self, n_mels: int, d_model: int, heads: int, n_layers: int,
                 n_positions: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(n_positions, d_model))
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)

    def stem(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, 2T]`` log-mel -> ``[B, T, d]`` (convolutions + positions). State
        ``j`` sees mel frames ``2j-2 .. 2j+2`` only, so zero padding after an even number
        of frames leaves a clip's states as they are when it is encoded alone."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        return x + self.positions[: x.shape[1]]

    def run_layers(self, x: torch.Tensor, start: int, key_mask: torch.Tensor | None = None,
                   final_norm: bool = True) -> torch.Tensor:
        for layer in self.layers[start:]:
            x = layer(x, key_mask)
        return self.ln(x) if final_norm else x

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.run_layers(self.stem(mel), 0)


def _names(n_layers: int) -> dict[str, str]:
    """torch state-dict name -> CTranslate2 encoder name."""
    names = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias",
             "conv2.weight": "conv2/weight", "conv2.bias": "conv2/bias",
             "positions": "position_encodings/encodings",
             "ln.weight": "layer_norm/gamma", "ln.bias": "layer_norm/beta"}
    parts = {"ln1": "self_attention/layer_norm", "qkv": "self_attention/linear_0",
             "out": "self_attention/linear_1", "ln2": "ffn/layer_norm",
             "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
    for i in range(n_layers):
        for ours, theirs in parts.items():
            w, b = ("gamma", "beta") if ours.startswith("ln") else ("weight", "bias")
            names[f"layers.{i}.{ours}.weight"] = f"layer_{i}/{theirs}/{w}"
            names[f"layers.{i}.{ours}.bias"] = f"layer_{i}/{theirs}/{b}"
    return names


def load_encoder(ct2_dir: Path) -> WhisperEncoder:
    """The encoder of a CTranslate2 Whisper model dir, in torch (float32)."""
    w = read_encoder(Path(ct2_dir) / "model.bin")
    n_layers = 1 + max(int(m.group(1)) for k in w if (m := re.match(r"layer_(\d+)/", k)))
    d_model = w["conv1/weight"].shape[0]
    heads = int(w.get("num_heads", np.array(6)))
    enc = WhisperEncoder(w["conv1/weight"].shape[1], d_model, heads, n_layers,
                         w["position_encodings/encodings"].shape[0])
    enc.load_state_dict({k: torch.from_numpy(w[v]) for k, v in _names(n_layers).items()})
    return enc


def save_encoder(enc: WhisperEncoder, src_dir: Path, dst_dir: Path) -> None:
    """Write ``src_dir`` (a CTranslate2 Whisper dir) to ``dst_dir`` with ``enc``'s encoder
    weights, each array in its original dtype and shape."""
    src, dst = Path(src_dir), Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.bin":
            shutil.copyfile(f, dst / f.name)
    data = (src / "model.bin").read_bytes()
    state = {k: v.detach().cpu().numpy() for k, v in enc.state_dict().items()}
    new = {_PREFIX + ct2: state[ours] for ours, ct2 in _names(len(enc.layers)).items()}
    out = bytearray()
    pos = 0
    for name, shape, dtype, offset, n_bytes in _variables(data):
        if name not in new:
            continue
        arr = np.ascontiguousarray(new[name], dtype=dtype)
        if list(arr.shape) != shape or arr.nbytes != n_bytes:
            raise ValueError(f"{name}: tuned shape {arr.shape} != stored {shape}")
        out += data[pos:offset] + arr.tobytes()
        pos = offset + n_bytes
    out += data[pos:]
    tmp = dst / "model.bin.tmp"
    tmp.write_bytes(bytes(out))
    tmp.replace(dst / "model.bin")


def pool(states: torch.Tensor, n_states: int) -> torch.Tensor:
    """``[L, d]`` encoder states (first ``n_states`` real) -> ``[T, d]`` 80 ms embeddings,
    exactly as ``intentd.daemon.model.frontend_whisper.embed`` pools them."""
    t = n_states // POOL_FRAMES
    if t == 0:
        return states[:n_states].mean(dim=0, keepdim=True)
    return states[: t * POOL_FRAMES].reshape(t, POOL_FRAMES, states.shape[-1]).mean(dim=1)


class SplitEncoder:
    """The torch encoder split where tuning starts: frozen ``lower`` (cached), tuned ``upper``.

    With ``stem`` the cache holds the log-mel (``[2T, n_mels]``), otherwise the states that
    enter layer ``first_tuned`` (``[T, d]``); either way ``shape[0]`` orders by length."""

    def __init__(self, enc: WhisperEncoder, first_tuned: int, stem: bool = False) -> None:
        self.enc = enc
        self.first = first_tuned
        self.stem = stem

    def lower(self, audio: np.ndarray) -> torch.Tensor:
        from intentd.daemon.model.frontend_whisper import even_frames, log_mel

        mel = torch.from_numpy(even_frames(log_mel(audio)))
        if self.stem:
            return mel.T.contiguous().to(torch.float16)
        with torch.no_grad():
            x = self.enc.stem(mel[None])
            for layer in self.enc.layers[: self.first]:
                x = layer(x)
        return x[0].to(torch.float16)

    def targets(self, audios: list[np.ndarray]) -> list[torch.Tensor]:
        """The whole encoder's pooled 80 ms embeddings of each clip (``[T, d]``, float16), as
        :meth:`upper` pools them: what a copy is pulled towards when distilling. One padded
        batch (padding leaves each clip's embeddings as they are alone)."""
        whole = SplitEncoder(self.enc, 0, stem=True)
        with torch.no_grad():
            x, mask = whole.upper([whole.lower(a) for a in audios])
        return [x[i, : int(mask[i].sum())].to(torch.float16) for i in range(len(audios))]

    def upper(self, cached: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached inputs -> pooled 80 ms embeddings ``[B, T, d]`` and their mask."""
        b, longest = len(cached), max(c.shape[0] for c in cached)
        padded = torch.zeros(b, longest, cached[0].shape[1])
        for i, c in enumerate(cached):
            padded[i, : c.shape[0]] = c.float()
        if self.stem:
            x = self.enc.stem(padded.transpose(1, 2))
            lengths = [c.shape[0] // 2 for c in cached]
        else:
            x, lengths = padded, [c.shape[0] for c in cached]
        keys = torch.arange(x.shape[1])[None, :] < torch.tensor(lengths)[:, None]
        x = self.enc.run_layers(x, self.first, keys)
        d = x.shape[-1]
        pooled = [pool(x[i], n) for i, n in enumerate(lengths)]
        t = max(p.shape[0] for p in pooled)
        out = torch.zeros(b, t, d)
        mask = torch.zeros(b, t, dtype=torch.long)
        for i, p in enumerate(pooled):
            out[i, : p.shape[0]] = p
            mask[i, : p.shape[0]] = 1
        return out, mask


def distill_loss(x: torch.Tensor, mask: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean square error of ``x`` (``[B, T, d]``, :meth:`SplitEncoder.upper`'s output) against
    each clip's target embeddings, over the real frames of ``mask``."""
    want = torch.zeros_like(x)
    for i, t in enumerate(targets):
        n = int(mask[i].sum())
        if t.shape[0] != n:
            raise ValueError(f"clip {i}: {n} embeddings but a target of {t.shape[0]}")
        want[i, :n] = t.float()
    err = (x - want).pow(2).mean(dim=-1) * mask
    return err.sum() / mask.sum()
