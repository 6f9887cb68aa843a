"""A microphone that disappears is reopened by name with backoff while the stream stays up;
one missing at start-up is waited for with ``wait_for_device``. A fault-injecting PortAudio
stand-in for the loss, and the real PortAudio with an ALSA file device whose input file is
missing and then restored."""

from __future__ import annotations

import ctypes.util
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intentd.daemon.audio import mic as M
from intentd.daemon.errors import ConfigError


class FakePortAudio:
    """sounddevice's surface that MicSource uses; ``present`` says if the device exists."""

    class PortAudioError(Exception):
        pass

    def __init__(self) -> None:
        self.present = True
        self.streams: list[FakePortAudio.Stream] = []
        self.rescans = 0

    def query_devices(self, device: Any = None, kind: str | None = None) -> dict[str, Any]:
        if not self.present:
            raise ValueError(f"No input device matching {device!r}")
        return {"name": "USB Mic", "default_samplerate": 16000.0, "max_input_channels": 1}

    def _terminate(self) -> None:
        self.rescans += 1

    def _initialize(self) -> None:
        pass

    class Stream:
        def __init__(self, pa: FakePortAudio, callback: Any, finished_callback: Any,
                     blocksize: int, **_: Any) -> None:
            self.pa, self.callback, self.finished = pa, callback, finished_callback
            self.blocksize = blocksize
            self.alive = False

        def start(self) -> None:
            self.alive = True
            threading.Thread(target=self._run, daemon=True).start()

        def _run(self) -> None:
            status = type("S", (), {"input_overflow": False})()
            while self.alive and self.pa.present:
                self.callback(np.full((self.blocksize, 1), 1000, np.int16), self.blocksize,
                              None, status)
                time.sleep(0.01)
            self.alive = False
            self.finished()  # unplugged: PortAudio ends the stream

        def stop(self) -> None:
            self.alive = False

        def close(self) -> None:
            self.alive = False

    def InputStream(self, **kw: Any) -> Stream:
        if not self.present:
            raise self.PortAudioError("Device unavailable")
        stream = self.Stream(self, **kw)
        self.streams.append(stream)
        return stream


def read_audio(src: M.MicSource, seconds: float) -> int:
    """Samples read in ``seconds`` (each read may come back empty)."""
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        block = src.read(0.05)
        assert block is not None, "the stream must not end"
        n += block.shape[0]
    return n


def test_a_lost_device_is_reopened_and_capture_resumes(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=M.__name__)
    pa = FakePortAudio()
    monkeypatch.setattr(M, "_import_sounddevice", lambda: pa)
    monkeypatch.setattr(M, "RETRY_FIRST_S", 0.05)
    src = M.MicSource("USB", block_ms=30)
    src.start()
    assert read_audio(src, 0.3) > 0
    pa.present = False  # unplugged
    read_audio(src, 0.5)
    while src.read(0.01) is not None and src._queue.qsize():  # drain what was captured
        pass
    assert read_audio(src, 0.3) == 0
    pa.present = True  # plugged in again
    assert read_audio(src, 1.0) > 0
    src.stop()
    assert src.read(0.01) is None
    lines = [r.getMessage() for r in caplog.records]
    assert sum("the device is not capturing" in m for m in lines) == 1  # logged once
    assert sum(m.endswith("capturing again") for m in lines) == 1
    assert len(pa.streams) >= 2 and pa.rescans >= 1


def test_a_missing_device_is_an_error_unless_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    pa = FakePortAudio()
    pa.present = False
    monkeypatch.setattr(M, "_import_sounddevice", lambda: pa)
    monkeypatch.setattr(M, "RETRY_FIRST_S", 0.05)
    with pytest.raises(ConfigError, match=r"no usable input device 'USB'.*wait_for_device"):
        M.MicSource("USB")
    src = M.MicSource("USB", wait_for_device=True)
    src.start()  # no device yet: not an error
    assert read_audio(src, 0.2) == 0
    pa.present = True
    assert read_audio(src, 1.0) > 0
    src.stop()


@pytest.mark.skipif(ctypes.util.find_library("portaudio") is None,
                    reason="PortAudio not installed (apt-get install libportaudio2)")
def test_alsa_file_device_waited_for_until_its_input_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "mic.raw"
    (np.sin(np.arange(16000 * 2) / 5.0) * 8000).astype("<i2").tofile(tmp_path / "ready.raw")
    (tmp_path / ".asoundrc").write_text(
        f'pcm.fakemic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; '
        'format "raw" }\n')
    monkeypatch.setenv("HOME", str(tmp_path))  # ALSA reads ~/.asoundrc when it initializes
    monkeypatch.setattr(M, "RETRY_FIRST_S", 0.1)
    monkeypatch.setattr(M, "_open_streams", 0)
    sd = M._import_sounddevice()
    sd._terminate()
    sd._initialize()
    src = M.MicSource("fakemic", sample_rate_hz=16000, wait_for_device=True)
    src.start()  # its input file is missing: PortAudio has no such device yet
    assert read_audio(src, 0.3) == 0
    os.replace(tmp_path / "ready.raw", raw)
    assert read_audio(src, 2.0) > 0
    src.stop()
    sd._terminate()
    sd._initialize()
