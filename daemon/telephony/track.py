"""One call track (or TCP stream) on its way to the engine: chunks in, stream audio out.

Stream time is call time. A media chunk's ``timestamp`` (ms since the stream started) says
where its audio belongs; the samples handed on so far say where the stream is:

- ahead (the platform sent nothing for a while: muted, on hold, lost packets): the gap is
  filled with silence first, so utterance times stay call times (at most
  ``telephony.max_gap_s``; a larger jump is logged and the excess left out, so the stream's
  times run that much behind the call's from then on);
- behind by a whole chunk (a duplicate, or one overtaken by later audio): dropped, counted;
  behind by part of one: the part already heard is cut off;
- within 10 ms: taken as it is (timestamps are whole ms; a chunk is 20 ms).

A delay in *delivery* is not a gap: without a timestamp jump nothing is inserted, however
late the chunk arrives (a network stall is not silence in the call).

Chunks (20 ms each from the platforms) are gathered into ``telephony.block_ms`` blocks
before the stream stage takes them: the stage's cost is per block (a thread wake-up, the
resampler, the VAD's frame loop), so 20 ms blocks cost 5x the CPU of 100 ms ones, for at
most ``block_ms`` more end-of-speech latency (against the VAD's 1.3 s hangover).

The hand-over is backpressure, not loss: a full queue (the stage or the model is behind)
makes the connection wait (:meth:`PushSource.put`), so its socket fills and the sender sees
it; only a stream stuck for ``push.GIVE_UP_S`` loses audio (counted in ``dropped_blocks``,
logged once).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from intentd.daemon.audio.push import PushSource

log = logging.getLogger(__name__)

QUEUE_S = 5.0  # audio the stage's queue holds before the connection waits
POLL_S = 0.02  # how often a waiting connection retries (every stream may be waiting)
TOLERANCE_MS = 10


class Track:
    """Owned by one connection's coroutine (not thread-safe; the source is)."""

    def __init__(self, name: str, rate_hz: int, channels: int = 1, block_ms: int = 100,
                 max_gap_s: float = 30.0) -> None:
        self.name = name
        self.rate_hz = rate_hz
        self.block_samples = max(1, rate_hz * block_ms // 1000)
        self.source = PushSource(name, rate_hz, channels,
                                 queue_blocks=max(4, math.ceil(QUEUE_S * 1000 / block_ms)))
        self._channels = channels
        self._max_gap = int(max_gap_s * rate_hz)
        self._tolerance = rate_hz * TOLERANCE_MS // 1000
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self.samples = 0  # placed on the stream's time line (audio and filled gaps)
        self.counts = {"chunks": 0, "late_chunks": 0, "gap_samples": 0, "gaps_cut": 0}
        self.waited_s = 0.0  # time spent waiting on a full queue (the engine was behind)
        self.ended = False

    # --- time line ------------------------------------------------------------------

    def place(self, block: np.ndarray, timestamp_ms: int | None) -> tuple[int, np.ndarray]:
        """(silence to insert first, the part of ``block`` to keep) for a chunk stamped
        ``timestamp_ms`` (module docstring)."""
        if timestamp_ms is None:
            return 0, block
        gap = timestamp_ms * self.rate_hz // 1000 - self.samples
        if gap > self._tolerance:
            if gap > self._max_gap:
                self.counts["gaps_cut"] += 1
                if self.counts["gaps_cut"] == 1:
                    log.warning("stream %s: the media timestamp jumps %.1f s ahead; %.0f s of "
                                "silence filled, so this stream's times now run %.1f s behind "
                                "the call's", self.name, gap / self.rate_hz,
                                self._max_gap / self.rate_hz, (gap - self._max_gap) / self.rate_hz)
                gap = self._max_gap
            return gap, block
        if -gap > self._tolerance:
            if -gap >= block.shape[0]:
                self.counts["late_chunks"] += 1
                return 0, block[:0]
            return 0, block[-gap:]
        return 0, block

    # --- the hand-over (the connection's coroutine) --------------------------------

    async def add(self, block: np.ndarray, timestamp_ms: int | None = None) -> None:
        """One chunk of audio ``[n, channels]``."""
        self.counts["chunks"] += 1
        silence, block = self.place(block, timestamp_ms)
        if silence:
            self.counts["gap_samples"] += silence
            while silence > 0:  # whole blocks, so one jump never makes one huge array
                n = min(silence, self.block_samples - self._pending_n)
                await self._gather(np.zeros((n, self._channels), dtype=np.float32))
                silence -= n
        if block.shape[0]:
            await self._gather(block)

    async def _gather(self, block: np.ndarray) -> None:
        self.samples += block.shape[0]
        self._pending.append(block)
        self._pending_n += block.shape[0]
        if self._pending_n >= self.block_samples:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        if self.source.offer(block):
            return
        t0 = time.monotonic()
        await self.source.put(block, POLL_S)
        self.waited_s += time.monotonic() - t0

    async def end(self) -> None:
        """No more audio: what is gathered goes on, then the stream ends (its stage finishes
        the utterance in progress: a call that hangs up mid-sentence still gets a verdict
        for what was said)."""
        if self.ended:
            return
        self.ended = True
        try:
            await self._flush()
        finally:
            self.source.end()

    def abandon(self) -> None:
        """End now without waiting (shutdown, a cancelled connection)."""
        self.ended = True
        self.source.end()

    def stats(self) -> dict[str, object]:
        return {**self.counts, "samples": self.samples, "waited_s": round(self.waited_s, 3),
                "dropped_blocks": self.source.dropped_blocks}
