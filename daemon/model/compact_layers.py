"""Building blocks of the compact head (:mod:`.compact`), over ``[B, T, H]`` frame features.

Every block takes the validity ``mask`` ``[B, T]`` and keeps padded frames at zero, so a clip
scores the same alone and inside a padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class KeywordConvPool(nn.Module):
    """Parallel 1-D convolutions (one per kernel size) + max- and mean-pooling over time.

    Intents are carried by a few words ("abroad", "freeze", "direct debit") anywhere in the
    utterance. Each channel is a local detector over 3-9 embeddings (0.25-0.7 s on top of the
    front-end's 0.78 s receptive field); the max over time says whether its pattern occurred
    anywhere, the mean how much of the utterance matches. The result is position-invariant,
    like a bag of words, so it carries over to phrasings never heard in training. Measured on
    banking held-out voices (400 per intent, with noise): 86.5% against 83.6% for the BiGRU +
    attention-pooling head, trained the same way.

    ``stride`` > 1 evaluates the detectors at every ``stride``-th frame only: adjacent
    embeddings overlap by 90% of their 0.78 s receptive field, so little is lost. Stride 2
    trains 35% faster (demo data, 10 epochs: 91.1% clean / 83.1% noisy against 92.1 / 83.3;
    15 epochs at stride 2 in the time of 10 at stride 1: 90.4 / 83.4), so it stays an option.
    """

    def __init__(self, hidden: int, kernel_sizes: Sequence[int], dropout: float,
                 stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, k, padding=k // 2, stride=stride) for k in kernel_sizes
        )
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.out_size = 2 * hidden * len(kernel_sizes)

    def detectors(self, h: torch.Tensor, mask: torch.Tensor
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each convolution's output ``[B, H, T']`` and their validity ``[B, 1, T']``."""
        # h [B, T, H] with padded frames at zero (gelu(0) = 0 keeps them there): they act like
        # the convolutions' own edge padding, so valid positions see the same inputs whatever
        # the batch. The GELU lets the detectors combine non-negative-ish evidence.
        x = self.dropout(self.act(h)).transpose(1, 2)
        # Output j of a strided conv is centred on frame j * stride.
        valid = mask[:, :: self.stride].unsqueeze(1)  # [B, 1, ceil(T / stride)]
        return [self.act(conv(x)) for conv in self.convs], valid

    def pool(self, ys: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        count = valid.sum(dim=2).to(ys[0].dtype)
        pooled = []
        for y in ys:
            pooled.append(y.masked_fill(~valid, torch.finfo(y.dtype).min).amax(dim=2))
            pooled.append((y * valid).sum(dim=2) / count)
        return torch.cat(pooled, dim=1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(*self.detectors(h, mask))


class SeparableConvBlock(nn.Module):
    """Depthwise conv over time + pointwise mix, residual, post-norm."""

    def __init__(self, hidden: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.pointwise = nn.Conv1d(hidden, hidden, 1)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # h [B, T, H]; padded frames are zero so they act like the conv's own edge padding.
        y = self.pointwise(self.depthwise(h.transpose(1, 2))).transpose(1, 2)
        h = self.norm(h + self.dropout(self.act(y)))
        return h * mask.unsqueeze(-1)


class GRUBlock(nn.Module):
    """Bidirectional GRU over valid frames, residual, post-norm.

    Intents hinge on word combinations spread over a 2-4 s utterance, beyond the conv's
    receptive field; the GRU gives every frame the whole utterance as context.
    """

    def __init__(self, hidden: int, gru_hidden: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(hidden, gru_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * gru_hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Packing keeps the backward direction from starting in the padding, so a clip
        # scores the same alone and in a padded batch.
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            h, lengths, batch_first=True, enforce_sorted=False
        )
        y, _ = self.gru(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=h.shape[1])
        h = self.norm(h + self.dropout(self.out(y)))
        return h * mask.unsqueeze(-1)


class AttentionPool(nn.Module):
    """Softmax-weighted means over valid frames, one per head, mixed back to ``hidden``.

    Several heads let the head attend to several key words at once (e.g. "card" and
    "abroad") instead of one summary position.
    """

    def __init__(self, hidden: int, attn_hidden: int, heads: int) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Linear(hidden, attn_hidden), nn.Tanh(), nn.Linear(attn_hidden, heads)
        )
        self.mix = nn.Linear(hidden * heads, hidden) if heads > 1 else nn.Identity()

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h)  # [B, T, heads]
        scores = scores.masked_fill(~mask.unsqueeze(-1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        pooled = torch.einsum("btk,bth->bkh", weights, h)
        return self.mix(pooled.flatten(1))


class SlotHeads(nn.Module):
    """One classifier per slot ("absent" + its values) over frame features ``[B, T, F]``.

    Bag-of-detector pooling cannot tell "a lot of milk and some sugar" from "some milk and a
    lot of sugar"; each slot head therefore attends to its own frames (attention pooling
    over the keyword detectors' outputs) before it classifies. A shared bottleneck keeps
    a head at ~50k parameters.
    """

    def __init__(self, features: int, sizes: Sequence[int], hidden: int = 128,
                 heads: int = 2, dropout: float = 0.3) -> None:
        super().__init__()
        self.bottleneck = nn.Sequential(nn.Linear(features, hidden), nn.GELU())
        self.dropout = nn.Dropout(dropout)
        self.pools = nn.ModuleList(AttentionPool(hidden, hidden // 2, heads) for _ in sizes)
        self.classifiers = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Concatenated logits ``[B, sum(sizes)]``."""
        z = self.dropout(self.bottleneck(frames)) * mask.unsqueeze(-1)
        return torch.cat([cls(self.dropout(pool(z, mask)))
                          for pool, cls in zip(self.pools, self.classifiers, strict=True)],
                         dim=1)


def span_masks(
    lengths: torch.Tensor, size: int, count: int, max_width: int, per_row_limit: torch.Tensor
) -> torch.Tensor:
    """``[B, size]`` bool: ``count`` random spans per row, each ``<= max_width`` wide and
    inside ``[0, per_row_limit)``."""
    b = lengths.shape[0]
    device = lengths.device
    out = torch.zeros(b, size, dtype=torch.bool, device=device)
    pos = torch.arange(size, device=device)[None, :]
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (b,), device=device)
        width = torch.minimum(width, per_row_limit // 2)  # never blank most of a short clip
        start = (torch.rand(b, device=device) * (per_row_limit - width + 1).float()).long()
        out |= (pos >= start[:, None]) & (pos < (start + width)[:, None])
    return out


