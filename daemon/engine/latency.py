"""Verdict latency figures of the model worker: a bounded window of recent values for the
median and a cumulative histogram for the metrics endpoint. Written by the worker only."""

from __future__ import annotations

import bisect
import collections
import statistics

KEEP = 1000  # latest verdict latencies kept for the median (bounded memory)
# Upper bounds (ms) of the cumulative verdict-latency histogram (metrics); +inf is implied.
BUCKETS_MS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


class Latencies:
    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=KEEP)
        self.counts = [0] * (len(BUCKETS_MS) + 1)  # per bucket, the last one +inf
        self.sum_ms = 0.0

    def add(self, ms: float) -> None:
        self._recent.append(ms)
        self.counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.sum_ms += ms

    def median_ms(self) -> float | None:
        return round(statistics.median(self._recent), 1) if self._recent else None

    def max_ms(self) -> float | None:
        return round(max(self._recent), 1) if self._recent else None
