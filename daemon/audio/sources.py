"""Audio sources: microphone (PortAudio), audio file, raw PCM on stdin.

Every source hands out float32 blocks shaped ``[n, channels]`` at its own
``sample_rate_hz``; resampling to the model rate happens downstream
(:mod:`intentd.daemon.audio.resample`). ``read(timeout_s)`` returns an empty block when nothing
arrived in time and ``None`` at end of stream.

The microphone callback runs on PortAudio's real-time thread: it only copies the block and
``put_nowait``-s it into a bounded queue, counting overflows and full-queue drops in
counters that only it writes. The reader side compares those counters with what it has
already reported and logs a rate-limited warning, so lost audio is never silent.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from intentd.daemon.config import InputConfig
from intentd.daemon.engine.handover import put_unless
from intentd.daemon.errors import ConfigError, DataError

log = logging.getLogger(__name__)

WARN_INTERVAL_S = 5.0
_PORTAUDIO_HINT = (
    "microphone input needs the PortAudio library: install it with "
    "`sudo apt-get install libportaudio2`, or read a file / stdin instead (--input FILE|-)"
)


@runtime_checkable
class AudioSource(Protocol):
    name: str
    sample_rate_hz: int
    channels: int

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> np.ndarray | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except (OSError, ImportError) as exc:  # OSError: libportaudio.so.2 is missing
        raise ConfigError(f"{_PORTAUDIO_HINT} ({exc})") from None
    return sounddevice


# --------------------------------------------------------------------------- microphone


class MicSource:
    """Live capture through PortAudio at the device's native rate (or the one requested)."""

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate_hz: int | None = None,
        block_ms: int = 30,
        queue_blocks: int = 200,
        channels: int = 1,
    ) -> None:
        sd = _import_sounddevice()
        self._sd = sd
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            dev = "default" if device is None else repr(device)
            raise ConfigError(
                f"input.source: no usable input device {dev} ({exc}); see --list-devices"
            ) from None
        self.device = device
        self.name = f"mic:{info['name']}"
        self.sample_rate_hz = int(sample_rate_hz or round(info["default_samplerate"]))
        self.channels = channels
        self._block_frames = max(1, round(self.sample_rate_hz * block_ms / 1000))
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=queue_blocks)
        self._stream: Any = None
        self._finished = False
        # Written only by the PortAudio callback thread.
        self._cb_overflows = 0
        self._cb_dropped = 0
        # Reader side.
        self._blocks = 0
        self._samples = 0
        self._reported = (0, 0)
        self._last_warn = -WARN_INTERVAL_S

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self._cb_overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self._cb_dropped += 1

    def _on_finished(self) -> None:
        self._finished = True

    def _open(self, channels: int) -> Any:
        return self._sd.InputStream(
            device=self.device,
            samplerate=self.sample_rate_hz,
            channels=channels,
            dtype="int16",  # what microphones deliver; exact, and half the copy of float32
            blocksize=self._block_frames,
            latency="high",
            callback=self._callback,
            finished_callback=self._on_finished,
        )

    def start(self) -> None:
        sd = self._sd
        try:
            try:
                self._stream = self._open(self.channels)
            except sd.PortAudioError:
                # Some hardware devices only open with their own channel count.
                info = sd.query_devices(self.device, "input")
                self.channels = int(info["max_input_channels"])
                self._stream = self._open(self.channels)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise ConfigError(
                f"input.source: cannot open {self.name} at {self.sample_rate_hz} Hz: {exc}"
            ) from None
        log.info("capturing from %s at %d Hz, %d ch", self.name, self.sample_rate_hz,
                 self.channels)

    def _report_losses(self) -> None:
        now = (self._cb_overflows, self._cb_dropped)
        if now == self._reported:
            return
        t = time.monotonic()
        if t - self._last_warn < WARN_INTERVAL_S:
            return
        log.warning(
            "%s: audio lost: %d input overflows, %d blocks dropped (queue full) so far; "
            "the consumer is too slow",
            self.name, now[0], now[1],
        )
        self._reported, self._last_warn = now, t

    def read(self, timeout_s: float) -> np.ndarray | None:
        self._report_losses()
        try:
            block = self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            if self._finished or self._stream is None:
                return None
            return np.zeros((0, self.channels), dtype=np.float32)
        self._blocks += 1
        self._samples += block.shape[0]
        return block.astype(np.float32) / 32768.0

    def stop(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except self._sd.PortAudioError as exc:
                log.warning("%s: error while closing: %s", self.name, exc)
        self._finished = True
        self._report_losses()

    def stats(self) -> dict[str, int]:
        return {
            "blocks": self._blocks,
            "samples": self._samples,
            "overflows": self._cb_overflows,
            "dropped_blocks": self._cb_dropped,
        }


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
        self._block_frames = max(1, round(self.sample_rate_hz * block_ms / 1000))
        self._t0: float | None = None
        self._pending: np.ndarray | None = None
        self._closed = False
        self._blocks = 0
        self._samples = 0

    def start(self) -> None:
        pass  # pacing starts at the first read

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._closed:
            return None
        if self._pending is None:
            try:
                block = self._file.read(self._block_frames, dtype="float32", always_2d=True)
            except (RuntimeError, OSError) as exc:
                raise DataError(f"cannot read audio file {self.path}: {exc}") from None
            if block.shape[0] == 0:
                return None
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
    if cfg.kind == "mic":
        return MicSource(cfg.device, None, cfg.block_ms, cfg.queue_blocks)
    if cfg.kind == "stdin":
        return StdinSource(cfg.rate_hz, cfg.channels, cfg.format, cfg.block_ms, cfg.queue_blocks)
    assert cfg.path is not None
    return FileSource(cfg.path, cfg.realtime, cfg.block_ms)


def list_devices() -> str:
    """Human-readable list of capture devices for ``--list-devices``."""
    sd = _import_sounddevice()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise ConfigError(f"cannot list audio devices: {exc}") from None
    lines = []
    for idx, dev in enumerate(devices):
        if dev["max_input_channels"] <= 0:
            continue
        mark = "*" if idx == default_in else " "
        host = sd.query_hostapis(dev["hostapi"])["name"]
        lines.append(
            f"{mark} {idx:3d}  {dev['name']}  ({host}, {dev['max_input_channels']} in, "
            f"{dev['default_samplerate']:g} Hz)  -> --input mic:{idx}"
        )
    if not lines:
        return "no audio input devices found (is a microphone connected? is ALSA configured?)"
    return "input devices (* = default):\n" + "\n".join(lines)
