"""BucketedSampler: every item once per epoch, batches of similar length, seeded."""

from __future__ import annotations

import random

import pytest

from trainer.batching import BucketedSampler


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
