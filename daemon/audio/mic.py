"""Live capture from a microphone through PortAudio (``sounddevice``).

The callback runs on PortAudio's real-time thread: it only copies the block and
``put_nowait``-s it into a bounded queue, counting overflows and full-queue drops in
counters that only it writes. The reader side compares those counters with what it has
already reported and logs a rate-limited warning, so lost audio is never silent.

A device that errors or disappears (unplugged, a USB reset) is logged once and reopened by
name with capped backoff (1 s doubling to 30 s) while the stream stays up: the daemon and the
other streams never notice. With ``input.wait_for_device`` a device missing at start-up is
waited for the same way instead of being an error.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from typing import Any

import numpy as np

from intentd.daemon.errors import ConfigError

log = logging.getLogger(__name__)

WARN_INTERVAL_S = 5.0
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
WAIT_RATE_HZ = 16000  # a device that is not there yet is opened at this rate
_open_streams = 0  # PortAudio streams open in this process (a device rescan would stop them)
_PORTAUDIO_HINT = (
    "microphone input needs the PortAudio library: install it with "
    "`sudo apt-get install libportaudio2`, or read a file / stdin instead (--input FILE|-)"
)


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
        wait_for_device: bool = False,
    ) -> None:
        sd = _import_sounddevice()
        self._sd = sd
        self.device = device
        self._stopped = False
        self._wait = wait_for_device
        self._retry_s = RETRY_FIRST_S
        self._next_try = 0.0
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            dev = "default" if device is None else repr(device)
            if not wait_for_device:
                raise ConfigError(f"input.source: no usable input device {dev} ({exc}); see "
                                  "--list-devices (or set input.wait_for_device: true)"
                                  ) from None
            log.warning("mic %s: not there yet (%s); waiting for it", dev, exc)
            info = {"name": str(device if device is not None else "default"),
                    "default_samplerate": sample_rate_hz or WAIT_RATE_HZ}
        # Reopened by name: after a re-plug the index may differ.
        self._device_name = info["name"] if device is not None else None
        self.name = f"mic:{info['name']}"
        self.sample_rate_hz = int(sample_rate_hz or round(info["default_samplerate"]))
        self.channels = channels
        self.live = True
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
        try:
            self._start()
        except ConfigError as exc:
            if not self._wait:
                raise
            self._lost(str(exc))  # waited for: keep trying in read()

    def _start(self) -> None:
        global _open_streams
        sd = self._sd
        self._finished = False
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
            self._stream = None
            raise ConfigError(
                f"input.source: cannot open {self.name} at {self.sample_rate_hz} Hz: {exc}"
            ) from None
        _open_streams += 1
        self._retry_s = RETRY_FIRST_S
        log.info("capturing from %s at %d Hz, %d ch", self.name, self.sample_rate_hz,
                 self.channels)

    def _lost(self, why: str) -> None:
        """The device is gone: close what is left; read() retries with backoff."""
        global _open_streams
        if self._stream is not None:
            with contextlib.suppress(self._sd.PortAudioError):
                self._stream.close()
            self._stream = None
            _open_streams -= 1
        log.warning("%s: the device is not capturing (%s); retrying in %.0f s, then up to "
                    "every %.0f s", self.name, why, self._retry_s, RETRY_MAX_S)
        self._next_try = time.monotonic() + self._retry_s

    def _retry(self) -> None:
        if time.monotonic() < self._next_try:
            return
        if _open_streams == 0:
            # Rescan the devices (a re-plugged one is new to PortAudio); only when no other
            # stream is open, as it would stop them.
            with contextlib.suppress(Exception):
                self._sd._terminate()
                self._sd._initialize()
        if self._device_name is not None:
            self.device = self._device_name
        try:
            self._start()
        except ConfigError as exc:
            self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)
            self._next_try = time.monotonic() + self._retry_s
            log.debug("%s: still not capturing (%s)", self.name, exc)
            return
        log.info("%s: capturing again", self.name)

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
        if self._stopped:
            return None
        if self._stream is None:
            self._retry()
        elif self._finished:
            self._lost("the stream ended")
        try:
            block = self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return np.zeros((0, self.channels), dtype=np.float32)
        self._blocks += 1
        self._samples += block.shape[0]
        return block.astype(np.float32) / 32768.0

    def stop(self) -> None:
        global _open_streams
        self._stopped = True
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except self._sd.PortAudioError as exc:
                log.warning("%s: error while closing: %s", self.name, exc)
            self._stream = None
            _open_streams -= 1
        self._finished = True
        self._report_losses()

    def stats(self) -> dict[str, int]:
        return {
            "blocks": self._blocks,
            "samples": self._samples,
            "overflows": self._cb_overflows,
            "dropped_blocks": self._cb_dropped,
        }


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
