"""A source fed by another thread: audio that arrives over a network connection.

The producer (a server's event loop) must never block, so :meth:`PushSource.offer` only
tries, and :meth:`PushSource.put` waits without blocking the loop: backpressure, not
loss (a command with a hole in it is a wrong command), so the client's socket fills and
its sender slows. Only a stream stuck for ``GIVE_UP_S`` loses audio (counted, logged once).
:meth:`PushSource.end` marks the end of the audio: what is queued is still read, then
``read`` returns None and the stream stage flushes the last utterance.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import numpy as np

from intentd.daemon.errors import DataError

log = logging.getLogger(__name__)

GIVE_UP_S = 30.0  # a stream whose audio nobody took for this long drops blocks
PCM_WIDTHS = (2,)  # bytes per sample the push sources decode: s16le


def pcm_to_float(data: bytes, width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM -> float32 ``[n, channels]`` in [-1, 1).

    A trailing partial frame is dropped (a sender may split frames across chunks; a
    well-behaved one does not)."""
    if width not in PCM_WIDTHS:
        raise DataError(f"audio width {width} byte(s) per sample is not supported; send "
                        "16-bit PCM (width 2)")
    if channels < 1:
        raise DataError(f"audio channels {channels} is invalid; send 1 or more")
    frame = width * channels
    usable = len(data) - len(data) % frame
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels)


class PushSource:
    """An :class:`~intentd.daemon.audio.sources.AudioSource` whose blocks are pushed in."""

    def __init__(self, name: str, rate_hz: int, channels: int = 1,
                 queue_blocks: int = 256) -> None:
        self.name = name
        self.sample_rate_hz = rate_hz
        self.channels = channels
        self.live = True  # network audio comes at the pace it is spoken
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=queue_blocks)
        self._ended = threading.Event()
        self._stopped = threading.Event()
        self._blocks = 0
        self._samples = 0
        self.dropped_blocks = 0  # given up by the producer (counted here for the figures)

    # --- producer side (any thread; never blocks) -----------------------------------

    def offer(self, block: np.ndarray) -> bool:
        """Queue ``block`` if there is room now. True when taken, or when the reader has
        stopped (nothing would ever make room: the producer must not wait for it)."""
        if self._stopped.is_set() or self._ended.is_set():
            return True
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            return False
        return True

    async def put(self, block: np.ndarray, poll_s: float) -> bool:
        """From an event loop: queue ``block``, retrying every ``poll_s`` while the queue
        is full; after ``GIVE_UP_S`` the block is dropped and counted (the first drop
        logged). False when dropped."""
        deadline = time.monotonic() + GIVE_UP_S
        while not self.offer(block):
            if time.monotonic() > deadline:
                self.dropped_blocks += 1
                if self.dropped_blocks == 1:
                    log.warning("stream %s: the engine has not taken audio for %.0f s; "
                                "dropping blocks (counted in dropped_blocks)", self.name,
                                GIVE_UP_S)
                return False
            await asyncio.sleep(poll_s)
        return True

    def end(self) -> None:
        """No more audio: ``read`` returns None once the queue is drained."""
        self._ended.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # --- the stream stage's side ----------------------------------------------------

    def start(self) -> None:
        pass  # nothing to open: the audio is pushed in

    def read(self, timeout_s: float) -> np.ndarray | None:
        try:
            block = self._queue.get_nowait()
        except queue.Empty:
            if self._ended.is_set():
                return None
            try:
                block = self._queue.get(timeout=max(0.0, timeout_s))
            except queue.Empty:
                return np.zeros((0, self.channels), dtype=np.float32)  # end: next read
        self._blocks += 1
        self._samples += int(block.shape[0])
        return block

    def stop(self) -> None:
        self._stopped.set()

    def stats(self) -> dict[str, int]:
        return {"blocks": self._blocks, "samples": self._samples, "overflows": 0,
                "dropped_blocks": self.dropped_blocks}
