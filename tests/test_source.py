"""Audio sources: file, raw stdin PCM (s16le / mu-law), and a real PortAudio capture from a
fake ALSA microphone (the ``file`` PCM plugin reading a raw file), no sound card needed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from intentd.daemon.audio.mic import list_devices
from intentd.daemon.audio.sources import (
    MULAW_TO_INT16,
    AudioSource,
    FileSource,
    StdinSource,
    decode_pcm,
    open_source,
)
from intentd.daemon.config import InputConfig
from intentd.daemon.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def drain(src: AudioSource, timeout_s: float = 5.0) -> np.ndarray:
    blocks = []
    while (b := src.read(timeout_s)) is not None:
        assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == src.channels
        blocks.append(b)
    return np.concatenate(blocks) if blocks else np.zeros((0, src.channels), np.float32)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16")])
def test_file_source_reads_every_sample(tmp_path: Path, fmt: str, subtype: str):
    rng = np.random.default_rng(0)
    data = rng.integers(-32768, 32767, size=(44100 + 17, 2), dtype=np.int16)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, data, 44100, format=fmt, subtype=subtype)
    src = FileSource(path, realtime=False, block_ms=30)
    assert (src.sample_rate_hz, src.channels) == (44100, 2)
    assert isinstance(src, AudioSource)
    src.start()
    got = drain(src)
    np.testing.assert_array_equal(got, data.astype(np.float32) / 32768.0)
    assert src.read(0.1) is None
    assert src.stats() == {"blocks": 34, "samples": 44117, "overflows": 0, "dropped_blocks": 0}
    src.stop()
    assert src.read(0.1) is None


def test_file_source_ogg(tmp_path: Path):
    path = tmp_path / "x.ogg"
    t = np.arange(16000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000,
             format="OGG", subtype="VORBIS")
    src = open_source(InputConfig(source=str(path), realtime=False))
    src.start()
    assert (src.sample_rate_hz, src.channels) == (16000, 1)
    assert drain(src).shape == (16000, 1)


def test_file_source_realtime_returns_empty_block_before_due(tmp_path: Path):
    path = tmp_path / "x.wav"
    sf.write(path, np.full(3200, 0.25, np.float32), 16000, subtype="PCM_16")
    src = FileSource(path, realtime=True, block_ms=100)
    src.start()
    first = src.read(0.0)  # the first block is due 100 ms after start
    assert first is not None and first.shape == (0, 1)
    assert drain(src, timeout_s=2.0).shape == (3200, 1)


def test_file_errors_name_the_path(tmp_path: Path):
    with pytest.raises(DataError, match=r"not found: .*missing\.wav"):
        FileSource(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(DataError, match=r"cannot read audio file .*bad\.wav"):
        FileSource(bad)
    with pytest.raises(DataError, match="directory"):
        FileSource(tmp_path)


# --------------------------------------------------------------------------- stdin


class ChunkyStream(io.RawIOBase):
    """Returns at most a random number of bytes per read, like a pipe."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data, self._pos = data, 0
        self._rng = np.random.default_rng(seed)

    def read(self, n: int = -1) -> bytes:
        k = int(self._rng.integers(1, max(2, n + 1)))
        chunk = self._data[self._pos : self._pos + k]
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("channels", [1, 2])
def test_stdin_s16le_partial_reads_and_odd_tail(channels: int, caplog):
    rng = np.random.default_rng(channels)
    samples = rng.integers(-32768, 32767, size=(8000, channels), dtype=np.int16)
    raw = samples.astype("<i2").tobytes() + b"\x01"  # a stray byte at EOF
    src = StdinSource(8000, channels, "s16le", block_ms=20, stream=ChunkyStream(raw))
    src.start()
    got = drain(src)
    np.testing.assert_array_equal(got, samples.astype(np.float32) / 32768.0)
    assert src.read(0.01) is None
    assert src.stats()["samples"] == 8000
    assert "ignored 1 trailing byte" in caplog.text


def test_stdin_mulaw_decodes_g711():
    # Reference values of ITU-T G.711 mu-law (as produced by audioop.ulaw2lin).
    assert MULAW_TO_INT16[[0x00, 0x0F, 0x7F, 0x80, 0xEF, 0xFF]].tolist() == [
        -32124, -16764, 0, 32124, 132, 0
    ]
    assert np.all(np.diff(MULAW_TO_INT16[0x80:0xFF][::-1].astype(int)) >= 0)
    data = bytes(range(256)) * 3
    src = StdinSource(8000, 1, "mulaw", stream=io.BytesIO(data))
    src.start()
    got = drain(src)[:, 0]
    np.testing.assert_array_equal(got, np.tile(MULAW_TO_INT16, 3).astype(np.float32) / 32768.0)


def test_mulaw_table_matches_audioop():
    audioop = pytest.importorskip("audioop")
    ref = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), "<i2")
    np.testing.assert_array_equal(MULAW_TO_INT16, ref)
    np.testing.assert_array_equal(decode_pcm(bytes([0, 255]), "mulaw"), ref[[0, 255]])


def test_stdin_timeout_then_data_then_eof():
    r, w = os.pipe()
    with open(r, "rb", buffering=0) as rf:
        src = StdinSource(16000, 1, "s16le", stream=rf)
        src.start()
        empty = src.read(0.05)
        assert empty is not None and empty.shape == (0, 1) and empty.dtype == np.float32
        writer = threading.Thread(target=lambda: (os.write(w, b"\x00\x40" * 10), os.close(w)))
        writer.start()
        got = drain(src)
        writer.join()
    np.testing.assert_array_equal(got[:, 0], np.full(10, 0.5, np.float32))


def test_open_source_dispatch(tmp_path: Path):
    src = open_source(InputConfig(source="-", rate_hz=8000, channels=2, format="mulaw"))
    assert isinstance(src, StdinSource)
    assert (src.sample_rate_hz, src.channels, src.format) == (8000, 2, "mulaw")
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(100, np.float32), 22050)
    assert isinstance(open_source(InputConfig(source=str(path))), FileSource)
    with pytest.raises(DataError, match=r"nope\.wav"):
        open_source(InputConfig(source=str(tmp_path / "nope.wav")))


def test_missing_portaudio_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(ConfigError, match="apt-get install libportaudio2"):
        list_devices()
    with pytest.raises(ConfigError, match="libportaudio2"):
        open_source(InputConfig(source="mic"))


# --------------------------------------------------------------------------- microphone


def _portaudio_missing() -> str | None:
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        return f"PortAudio missing ({exc}); apt-get install libportaudio2"
    return None


CAPTURE = textwrap.dedent(
    """
    import json, logging, sys, time
    import numpy as np
    logging.basicConfig(level=logging.WARNING)
    from intentd.daemon.audio.mic import MicSource, list_devices
    rate, channels, n, queue_blocks, wait_s = json.loads(sys.argv[1])
    src = MicSource("fakemic", rate, block_ms=30, queue_blocks=queue_blocks, channels=channels)
    src.start()
    time.sleep(wait_s)
    blocks, got = [], 0
    while got < n:
        b = src.read(5.0)
        assert b is not None and b.dtype == np.float32
        blocks.append(b)
        got += b.shape[0]
    src.stop()
    np.save(sys.argv[2], np.concatenate(blocks))
    print(json.dumps({"rate": src.sample_rate_hz, "stats": src.stats(),
                      "devices": list_devices()}))
    """
)


def _fake_mic_capture(tmp_path: Path, raw: np.ndarray, args: list) -> tuple[dict, np.ndarray, str]:
    home = tmp_path / "home"
    home.mkdir()
    raw_path = tmp_path / "mic.raw"
    raw.astype("<i2").tofile(raw_path)
    # alsa-lib reads ~/.asoundrc; the file plugin feeds `infile` to capture, null sinks playback.
    (home / ".asoundrc").write_text(
        f'pcm.fakemic {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
        f'  infile "{raw_path}"\n  format "raw"\n}}\n'
    )
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    out = tmp_path / "captured.npy"
    proc = subprocess.run(
        [sys.executable, "-c", CAPTURE, json.dumps(args), str(out)],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), np.load(out), proc.stderr


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (48000, 2), (None, 1)])
def test_mic_source_captures_fake_alsa_device_exactly(tmp_path: Path, rate, channels):
    if reason := _portaudio_missing():
        pytest.skip(reason)
    n = 24000
    rng = np.random.default_rng(5)
    raw = rng.integers(-32768, 32767, size=n * channels, dtype=np.int16)
    info, got, _ = _fake_mic_capture(tmp_path, raw, [rate, channels, n, 200, 0.0])
    # None = the device's native default rate (44100 Hz for an ALSA plugin device)
    assert info["rate"] == (rate or 44100)
    assert "fakemic" in info["devices"]
    assert got.shape[1] == channels
    expected = raw.reshape(-1, channels).astype(np.float32) / 32768.0
    np.testing.assert_array_equal(got[:n], expected)
    assert info["stats"]["samples"] == got.shape[0]


def test_mic_source_counts_dropped_blocks(tmp_path: Path):
    if reason := _portaudio_missing():
        pytest.skip(reason)
    # The null device delivers far faster than real time: a 4-block queue must overflow.
    raw = np.arange(-2000, 2000, dtype=np.int16)
    info, got, stderr = _fake_mic_capture(tmp_path, raw, [16000, 1, 480, 4, 0.3])
    np.testing.assert_array_equal(got[:480, 0], raw[:480].astype(np.float32) / 32768.0)
    assert info["stats"]["dropped_blocks"] > 0
    assert "blocks dropped (queue full)" in stderr
