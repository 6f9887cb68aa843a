"""Replay audio through the daemon's engine in-process, as fast as possible.

The same code path as the daemon: resampler, VAD segmenter, window cutter, worker and the
event JSON; only the source (numpy chunks instead of a file/mic) and the sink (a list of
lines) differ. The backend is loaded once by the caller and shared by every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from intentd.daemon.config import Config
from intentd.daemon.engine.engine import Engine, engine_settings
from intentd.daemon.errors import IntentdError
from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import Event, to_json_line
from intentd.daemon.output.router import Router


class ArraySource:
    """An audio source over mono float chunks (any length), handed out in blocks of
    ``block_ms``; not paced, so the engine runs faster than real time."""

    def __init__(self, chunks: Iterable[np.ndarray], sample_rate_hz: int, block_ms: int,
                 name: str = "array", on_samples: Callable[[int], None] | None = None) -> None:
        self.name = f"array:{name}"
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = 1
        self._block = max(1, round(sample_rate_hz * block_ms / 1000))
        self._chunks: Iterator[np.ndarray] = iter(chunks)
        self._buf = np.zeros(0, dtype=np.float32)
        self._done = False
        self._stopped = False
        self._on_samples = on_samples
        self._blocks = 0
        self._samples = 0

    def start(self) -> None:
        pass

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._stopped:
            return None
        while self._buf.size < self._block and not self._done:
            nxt = next(self._chunks, None)
            if nxt is None:
                self._done = True
            else:
                self._buf = np.concatenate([self._buf, np.asarray(nxt, np.float32).reshape(-1)])
        if self._buf.size == 0:
            return None
        block, self._buf = self._buf[: self._block], self._buf[self._block:]
        self._blocks += 1
        self._samples += block.size
        if self._on_samples is not None:
            self._on_samples(block.size)
        return block.reshape(-1, 1)

    def stop(self) -> None:
        self._stopped = True

    def stats(self) -> dict[str, int]:
        return {"blocks": self._blocks, "samples": self._samples, "overflows": 0,
                "dropped_blocks": 0}


class CaptureSink:
    """A sink that keeps every event's JSON line."""

    def __init__(self) -> None:
        self.name = "capture"
        self.lines: list[str] = []

    def start(self) -> None:
        pass

    def emit(self, event: Event) -> None:
        self.lines.append(to_json_line(event))

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"sink": self.name, "written": len(self.lines), "lost": 0}

    def events(self) -> list[dict[str, Any]]:
        """Intent and no_match events (speech_start/end left out)."""
        out = [json.loads(x) for x in self.lines]
        return [e for e in out if e.get("type") in ("intent", "no_match")]


def sweep_config(cfg: Config) -> Config:
    """``cfg`` with threshold 0: every verdict is an intent event carrying its score, so
    any threshold can be applied afterwards from the one run."""
    return replace(cfg, model=replace(cfg.model, threshold=0.0),
                   input=replace(cfg.input, realtime=False))


def replay(cfg: Config, backend: ModelBackend, chunks: Iterable[np.ndarray],
           sample_rate_hz: int, name: str = "array",
           on_samples: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run one stream through a fresh engine; returns its intent/no_match events."""
    source = ArraySource(chunks, sample_rate_hz, cfg.input.block_ms, name, on_samples)
    sink = CaptureSink()
    engine = Engine(backend, engine_settings(cfg, backend), Router([sink]),
                    model_name=backend.name)
    engine.start()
    stage = engine.add_stream(cfg.inputs[0].name, source)
    engine.wait_streams()
    engine.stop()
    if engine.worker_error is not None or stage.error is not None:
        why = stage.error or repr(engine.worker_error)
        raise IntentdError(f"the engine failed on stream {name}: {why}")
    return sink.events()
