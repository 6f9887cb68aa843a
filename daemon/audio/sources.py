"""Audio sources: the protocol, audio files, raw PCM on stdin (the microphone: :mod:`.mic`).

Every source hands out float32 blocks shaped ``[n, channels]`` at its own
``sample_rate_hz``; resampling to the model rate happens downstream (:mod:`.resample`).
``read(timeout_s)`` returns an empty block when nothing arrived in time and ``None`` at end
of stream.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np

from intentd.daemon.config import InputConfig
from intentd.daemon.engine.handover import put_unless
from intentd.daemon.errors import ConfigError, DataError

log = logging.getLogger(__name__)

@runtime_checkable
class AudioSource(Protocol):
    name: str
    sample_rate_hz: int
    channels: int
    # Audio arrives at the pace it is spoken (a microphone, a call, a file played in real
    # time): the stream stage may let silence pile up for a moment and read it in one go.
    live: bool

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> np.ndarray | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


# --------------------------------------------------------------------------- file


class FileSource:
    """wav/flac/ogg (anything libsndfile reads), blockwise, optionally paced in real time."""

    def __init__(self, path: str | Path, realtime: bool = True, block_ms: int = 30) -> None:
        import soundfile as sf

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"audio file not found: {self.path}")
        if self.path.is_dir():
            raise DataError(f"audio input is a directory, not a file: {self.path}")
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise DataError(
                f"cannot read audio file {self.path}: {exc} (supported: wav, flac, ogg)"
            ) from None
        self.name = f"file:{self.path}"
        self.sample_rate_hz = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.realtime = realtime
        self.live = realtime
        self._block_frames = max(1, round(self.sample_rate_hz * block_ms / 1000))
        self._t0: float | None = None
        self._pending: np.ndarray | None = None
        # libsndfile is read a second at a time: a read call costs ~30 us warm and ~250 us
        # on a thread just woken from its real-time pacing sleep, once per 30 ms block.
        self._readahead = np.zeros((0, self.channels), dtype=np.float32)
        self._closed = False
        self._blocks = 0
        self._samples = 0

    def start(self) -> None:
        pass  # pacing starts at the first read

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._closed:
            return None
        if self._pending is None:
            if self._readahead.shape[0] == 0:
                try:
                    self._readahead = self._file.read(
                        self._block_frames * -(-self.sample_rate_hz // self._block_frames),
                        dtype="float32", always_2d=True)
                except (RuntimeError, OSError) as exc:
                    raise DataError(f"cannot read audio file {self.path}: {exc}") from None
            if self._readahead.shape[0] == 0:
                return None
            block = self._readahead[: self._block_frames]
            self._readahead = self._readahead[self._block_frames :]
            self._pending = block
        if self.realtime:
            if self._t0 is None:
                self._t0 = time.monotonic()
            # Absolute schedule: a block is due when its last sample would have been captured.
            due = self._t0 + (self._samples + self._pending.shape[0]) / self.sample_rate_hz
            wait = due - time.monotonic()
            if wait > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return np.zeros((0, self.channels), dtype=np.float32)
            if wait > 0:
                time.sleep(wait)
        block, self._pending = self._pending, None
        self._blocks += 1
        self._samples += block.shape[0]
        return block

    def stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()

    def stats(self) -> dict[str, int]:
        return {"blocks": self._blocks, "samples": self._samples, "overflows": 0,
                "dropped_blocks": 0}


# --------------------------------------------------------------------------- stdin


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> linear 16-bit value (ITU-T G.711, as in audioop.ulaw2lin)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


MULAW_TO_INT16 = _mulaw_table()


def decode_pcm(data: bytes, fmt: str) -> np.ndarray:
    """Raw PCM bytes (whole samples) -> int16 samples."""
    if fmt == "s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    if fmt == "mulaw":
        return MULAW_TO_INT16[np.frombuffer(data, dtype=np.uint8)]
    raise ConfigError(f"input.format = {fmt!r} is invalid; allowed: s16le, mulaw")


class StdinSource:
    """Raw interleaved PCM (s16le or G.711 mu-law) from a binary stream, stdin by default.

    A reader thread does the blocking reads so ``read(timeout_s)`` can time out; it hands
    blocks over through a bounded queue and waits when the queue is full (a pipe applies
    back-pressure, so nothing is dropped).
    """

    def __init__(
        self,
        rate_hz: int,
        channels: int = 1,
        fmt: str = "s16le",
        block_ms: int = 30,
        queue_blocks: int = 200,
        stream: BinaryIO | None = None,
    ) -> None:
        decode_pcm(b"", fmt)  # validates fmt
        self.name = "stdin"
        self.sample_rate_hz = rate_hz
        self.channels = channels
        self.live = False  # a pipe may carry a recording faster than real time
        self.format = fmt
        self._stream = stream
        self._frame_bytes = (2 if fmt == "s16le" else 1) * channels
        self._block_bytes = max(1, round(rate_hz * block_ms / 1000)) * self._frame_bytes
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._eof = False
        self._error: str | None = None
        self._blocks = 0
        self._samples = 0

    def start(self) -> None:
        if self._stream is None:
            self._stream = sys.stdin.buffer
        self._thread = threading.Thread(target=self._run, name="intentd-stdin", daemon=True)
        self._thread.start()

    def _put(self, item: np.ndarray | None) -> None:
        put_unless(self._queue, item, self._stop, poll_s=0.1)

    def _run(self) -> None:
        stream = self._stream
        assert stream is not None
        reader = getattr(stream, "read1", None) or stream.read
        rest = b""
        try:
            while not self._stop.is_set():
                chunk = reader(self._block_bytes)
                if not chunk:
                    break
                data = rest + chunk
                usable = len(data) - len(data) % self._frame_bytes
                rest = data[usable:]
                if usable:
                    samples = decode_pcm(data[:usable], self.format)
                    self._put(samples.reshape(-1, self.channels))
        except (OSError, ValueError) as exc:
            self._error = str(exc)
            log.error("stdin: read failed: %s", exc)
        if rest:
            log.warning(
                "stdin: ignored %d trailing byte(s) at end of stream: not a whole %d-byte "
                "sample frame (%s, %d ch)", len(rest), self._frame_bytes, self.format,
                self.channels,
            )
        self._put(None)

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._eof:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return np.zeros((0, self.channels), dtype=np.float32)
        if item is None:
            self._eof = True
            return None
        self._blocks += 1
        self._samples += item.shape[0]
        return item.astype(np.float32) / 32768.0

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"blocks": self._blocks, "samples": self._samples, "overflows": 0,
                "dropped_blocks": 0}


# --------------------------------------------------------------------------- factory


def open_source(cfg: InputConfig) -> AudioSource:
    """The source an input names (not started)."""
    if cfg.kind == "mic":
        from intentd.daemon.audio.mic import MicSource

        return MicSource(cfg.device, None, cfg.block_ms, cfg.queue_blocks,
                         wait_for_device=cfg.wait_for_device)
    if cfg.kind == "stdin":
        return StdinSource(cfg.rate_hz, cfg.channels, cfg.format, cfg.block_ms, cfg.queue_blocks)
    assert cfg.path is not None
    return FileSource(cfg.path, cfg.realtime, cfg.block_ms)
