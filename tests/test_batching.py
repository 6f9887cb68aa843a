"""BucketedSampler (every item once per epoch, batches of similar length, seeded) and
length_split_loss (a batch computed in length slices: same loss and gradient)."""

from __future__ import annotations

import random

import pytest
import torch

from intentd.trainer.fitting.batching import BucketedSampler, length_split_loss


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def test_each_epoch_is_a_permutation_cut_into_sorted_batches() -> None:
    lengths = list(range(103))
    random.Random(0).shuffle(lengths)
    s = BucketedSampler(lengths, batch_size=8, bucket_batches=4, seed=1)
    assert len(s) == 103
    first, second = list(s), list(s)
    assert sorted(first) == sorted(second) == list(range(103))
    assert first != second  # a new order every epoch
    batches = _batches(first, 8)
    # 12 full batches (shuffled), then the 7 left over in the last bucket.
    assert [len(b) for b in batches] == [8] * 12 + [7]
    for b in batches:
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_long_items_share_batches() -> None:
    # 4 long clips among 60 short ones: random batches would pad ~4 batches to the long
    # length; sorted buckets of 4 batches of 8 need at most one per bucket (2 buckets).
    lengths = [20] * 60 + [180] * 4
    order = list(BucketedSampler(lengths, batch_size=8, bucket_batches=4, seed=3))
    padded = sum(max(lengths[i] for i in b) == 180 for b in _batches(order, 8))
    assert padded <= 2


def test_same_seed_same_order() -> None:
    lengths = [random.Random(i).randint(1, 50) for i in range(40)]
    assert list(BucketedSampler(lengths, 4, seed=9)) == list(BucketedSampler(lengths, 4, seed=9))
    assert list(BucketedSampler(lengths, 4, seed=9)) != list(BucketedSampler(lengths, 4, seed=10))


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BucketedSampler([1, 2], batch_size=0)


def _deterministic_head() -> torch.nn.Module:
    import intentd.daemon.model.compact as compact

    cfg = compact.CompactConfig(num_labels=5, dropout=0.0, input_dropout=0.0,
                                time_mask_count=0, feature_mask_count=0,
                                subtract_utterance_mean=True)
    torch.manual_seed(0)
    model = compact.CompactForAudioClassification(cfg)
    model.train()  # the training path, made deterministic by zero dropout and masks
    return model


def _padded_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(len(lengths), max(lengths), 96)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, 96, generator=g)
        mask[i, :n] = 1
    labels = torch.arange(len(lengths)) % 5
    return {"input_values": x, "attention_mask": mask, "labels": labels}


def test_length_split_loss_equals_the_whole_batch_loss_and_gradient() -> None:
    model = _deterministic_head()
    lengths = [7, 40, 3, 12, 12, 90, 5, 25, 33, 8, 61, 4]
    batch = _padded_batch(lengths)

    def loss_of(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).loss

    whole = loss_of(batch)
    whole.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    seen: list[tuple[int, int]] = []

    def recording(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        seen.append((mask.shape[0], mask.shape[1]))
        assert int(mask.sum(dim=1).max()) == mask.shape[1]  # trimmed to its longest row
        rows = inputs.pop("row_info")
        assert rows.shape == (mask.shape[0], 90)
        # Each slice carries its own rows: their lengths are those of the rows named there.
        assert mask.sum(dim=1).tolist() == [lengths[int(r)] for r in rows[:, 0] // 90]
        return loss_of(inputs)

    # A per-row tensor as wide as the padded batch is long is sliced by rows, never trimmed.
    batch["row_info"] = torch.arange(12 * 90).reshape(12, 90)
    split = length_split_loss(recording, batch, parts=4)
    split.backward()
    assert sorted(seen) == [(3, 5), (3, 12), (3, 33), (3, 90)]
    torch.testing.assert_close(split, whole)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_length_split_loss_leaves_small_or_unmasked_batches_whole() -> None:
    calls: list[int] = []

    def loss_of(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(inputs["input_values"].shape[0])
        return inputs["input_values"].sum()

    small = _padded_batch([3, 4, 5, 6, 7])
    assert length_split_loss(loss_of, small, parts=4) == small["input_values"].sum()
    no_mask = {"input_values": torch.ones(16, 4, 96)}
    length_split_loss(loss_of, no_mask, parts=4)
    assert calls == [5, 16]
