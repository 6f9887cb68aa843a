"""Daemon wiring: source -> segmenter stage -> model worker -> sinks, one thread per stage.

::

    reader thread      source.read() ──► blocks queue (bounded, input.queue_blocks)
    segmenter thread   StreamResampler → Segmenter (VAD) → WindowCutter per utterance
                       ──► work queue (bounded, model.queue_windows)
    worker thread      classify windows / feed the utterance scorer / verdict → sinks

Backpressure is explicit: only the microphone callback may drop audio (counted by the
source); every other hand-over blocks, so files and stdin never lose data and a slow model
just makes a file run slower.

Times: ``start_s``/``end_s`` are stream time of the *voiced* span (first to last frame the
VAD called speech), not the padded audio the model hears; that is what a speech boundary
in a transcript means. ``latency_ms`` is the wall time from the moment the segmenter saw
the end of speech (after the ``vad.min_silence_ms`` hangover) to the moment the event is
emitted. For a live source this is the delay added after the hangover; for files read with
``--no-realtime`` it measures processing latency only.

Shutdown: :meth:`Pipeline.request_stop` (SIGINT/SIGTERM) stops the source, then the
current utterance is finished: the segmenter is flushed, what was heard is classified and
emitted, the sinks are flushed. This drain gets :data:`DRAIN_GRACE_S`; if the model is
slower than that, the rest is abandoned (logged) so the process still exits 0 within 2 s,
as a service manager expects. At the end of a file or stdin the drain has no deadline.

Seams for later work: sources, sinks and backends are protocols; every item carries a
stream name (multi-stream); :meth:`Pipeline.health` exposes per-stage heartbeats that a
systemd watchdog can check; a SIGHUP reload can be built by constructing a new Pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any

import numpy as np
from intentd.daemon.audio.resample import StreamResampler
from intentd.daemon.audio.segmenter import (
    Discarded,
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from intentd.daemon.audio.sources import AudioSource
from intentd.daemon.audio.vad import VAD_RATES_HZ
from intentd.daemon.audio.windowing import WindowCutter
from intentd.daemon.config import Config
from intentd.daemon.engine.handover import put_unless
from intentd.daemon.engine.worker import (
    STOP,
    AudioItem,
    DiscardItem,
    EndItem,
    EventItem,
    WindowItem,
    Worker,
    WorkerSettings,
)
from intentd.daemon.errors import ConfigError, IntentdError
from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import REJECT_LABEL, SpeechEndEvent, SpeechStartEvent
from intentd.daemon.output.sinks import Sink

log = logging.getLogger(__name__)

DRAIN_GRACE_S = 1.2  # + sink flush (0.5 s) stays under the 2 s exit promise
READ_TIMEOUT_S = 0.1
_EOF = None


class _Heartbeat:
    """Last progress time of one stage; written by that stage only."""

    def __init__(self) -> None:
        self.t = time.monotonic()

    def beat(self) -> None:
        self.t = time.monotonic()


class _Open:
    def __init__(self, start_sample: int, voiced_start: int, cutter: WindowCutter) -> None:
        self.start_sample = start_sample
        self.voiced_start = voiced_start
        self.cutter = cutter


class SegmenterStage:
    """Audio blocks -> work items for the worker. Owns resampler, VAD and cutters."""

    def __init__(self, cfg: Config, in_rate_hz: int, in_channels: int, rate_hz: int,
                 out: queue.Queue[Any], send_audio: bool, abort: threading.Event) -> None:
        if rate_hz not in VAD_RATES_HZ:
            raise ConfigError(f"the model's sample rate {rate_hz} Hz is not one the VAD "
                              f"supports ({', '.join(map(str, VAD_RATES_HZ))})")
        self.stream = cfg.output.stream_name
        self.rate_hz = rate_hz
        self.spec = cfg.windows.spec(rate_hz)
        self.speech_events = cfg.output.speech_events
        self.send_audio = send_audio
        self.out = out
        self.abort = abort
        self.resampler = StreamResampler(in_rate_hz, rate_hz, in_channels)
        self.segmenter = Segmenter(cfg.vad, rate_hz)
        self.frame = self.segmenter.frame_samples
        self._open: dict[int, _Open] = {}
        self.heartbeat = _Heartbeat()
        self.counts = {"utterances": 0, "discarded": 0, "max_length_splits": 0,
                       "windows": 0, "samples_in": 0}

    def run(self, inbox: queue.Queue[Any]) -> None:
        while not self.abort.is_set():
            try:
                block = inbox.get(timeout=0.5)
            except queue.Empty:
                self.heartbeat.beat()
                continue
            self.heartbeat.beat()
            if block is _EOF:
                self._handle(self.segmenter.process(self.resampler.flush()))
                self._handle(self.segmenter.flush())
                self._put(STOP)
                return
            self.counts["samples_in"] += int(block.shape[0])
            self._handle(self.segmenter.process(self.resampler.process(block)))

    def stats(self) -> dict[str, Any]:
        seg = self.segmenter
        return {**self.counts, "pauses_shortened": seg.pause_cuts,
                "pause_s_cut": round(seg.pause_cut_samples / self.rate_hz, 3)}

    def _put(self, item: Any) -> None:
        put_unless(self.out, item, self.abort, poll_s=0.2)

    def _windows(self, utt_id: int, utt: _Open, pairs: list[tuple[int, np.ndarray]]) -> None:
        for start, window in pairs:
            self._put(WindowItem(self.stream, utt_id, utt.start_sample + start, window))
        self.counts["windows"] += len(pairs)

    def _handle(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, UtteranceStart):
                voiced = ev.voiced_start_sample if ev.voiced_start_sample >= 0 else ev.start_sample
                self._open[ev.index] = _Open(ev.start_sample, voiced, WindowCutter(self.spec))
                if self.speech_events:
                    self._put(EventItem(SpeechStartEvent(
                        ev.index, self.stream, voiced / self.rate_hz, time.time())))
            elif isinstance(ev, UtteranceAudio):
                utt = self._open[ev.index]
                self._windows(ev.index, utt, utt.cutter.push(ev.samples))
                if self.send_audio:
                    self._put(AudioItem(self.stream, ev.index, ev.samples))
            elif isinstance(ev, UtteranceEnd):
                seen = time.monotonic()
                utt = self._open.pop(ev.index)
                self._windows(ev.index, utt, utt.cutter.finish())
                start, end = utt.start_sample, ev.end_sample
                if 0 <= ev.voiced_start_sample < ev.voiced_end_sample:
                    start, end = ev.voiced_start_sample, ev.voiced_end_sample
                self.counts["utterances"] += 1
                self.counts["max_length_splits"] += ev.reason == "max_length"
                if self.speech_events:
                    self._put(EventItem(SpeechEndEvent(
                        ev.index, self.stream, end / self.rate_hz, time.time())))
                self._put(EndItem(self.stream, ev.index, start, end, seen, ev.reason))
            elif isinstance(ev, Discarded):
                utt = self._open.pop(ev.index)
                end = ev.voiced_end_sample if ev.voiced_end_sample >= 0 else utt.voiced_start
                self.counts["discarded"] += 1
                self._put(DiscardItem(self.stream, ev.index))
                if self.speech_events:
                    self._put(EventItem(SpeechEndEvent(
                        ev.index, self.stream, end / self.rate_hz, time.time())))


class Pipeline:
    """Owns the stage threads for one input stream. ``run()`` returns the exit code."""

    def __init__(self, cfg: Config, source: AudioSource, backend: ModelBackend,
                 sinks: list[Sink], model_name: str | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.backend = backend
        self.sinks = sinks
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._blocks: queue.Queue[Any] = queue.Queue(maxsize=cfg.input.queue_blocks)
        self._work: queue.Queue[Any] = queue.Queue(maxsize=cfg.model.queue_windows)
        self.segmenter = SegmenterStage(
            cfg, source.sample_rate_hz, source.channels, backend.sample_rate_hz, self._work,
            send_audio=cfg.model.verdict == "utterance", abort=self._abort)
        settings = WorkerSettings(verdict=cfg.model.verdict, threshold=cfg.model.threshold,
                                  top_k=cfg.model.top_k, sample_rate_hz=backend.sample_rate_hz)
        if cfg.model.verdict != "utterance" and REJECT_LABEL in backend.labels:
            # Measured on 100 real coffee orders: every utterance came out no_match.
            log.warning("model.verdict %r with a model that has the rejection class %r: a 1 s "
                        "window rarely holds a whole command, so %r wins most windows; use "
                        "model.verdict: utterance", cfg.model.verdict, REJECT_LABEL,
                        REJECT_LABEL)
        self.worker = Worker(backend, settings, sinks, self._work, model_name=model_name)
        self.reader_heartbeat = _Heartbeat()
        self._error: BaseException | None = None
        self._failed_stage: str | None = None
        self.aborted = False

    # --- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Signal-handler safe: only sets a flag; the reader thread stops the source."""
        self._stop.set()

    def health(self) -> dict[str, float]:
        """Seconds since each stage last made progress (or idled normally)."""
        now = time.monotonic()
        return {"reader": now - self.reader_heartbeat.t,
                "segmenter": now - self.segmenter.heartbeat.t,
                "worker": now - self.worker.heartbeat}

    def run(self) -> int:
        self.source.start()
        threads = [
            threading.Thread(target=self._guard, args=("reader", self._read_loop),
                             name="intentd-reader", daemon=True),
            threading.Thread(target=self._guard,
                             args=("segmenter", lambda: self.segmenter.run(self._blocks)),
                             name="intentd-segmenter", daemon=True),
            threading.Thread(target=self._guard, args=("worker", self.worker.run),
                             name="intentd-worker", daemon=True),
        ]
        for t in threads:
            t.start()
        log.info("running: %s (%d Hz, %d ch) -> %s; model %s (%s verdict)", self.source.name,
                 self.source.sample_rate_hz, self.source.channels,
                 ", ".join(s.name for s in self.sinks), self.worker.model_name,
                 self.cfg.model.verdict)
        worker = threads[2]
        deadline: float | None = None
        while worker.is_alive():
            worker.join(0.05)
            if self._failed_stage is not None and not self._abort.is_set():
                self._stop.set()
                self._abort.set()  # a dead stage cannot drain: unblock the others
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + DRAIN_GRACE_S
            if deadline is not None and time.monotonic() > deadline and worker.is_alive():
                log.warning("shutdown: the model did not finish within %.1f s; "
                            "abandoning the rest of the current utterance", DRAIN_GRACE_S)
                self.aborted = True
                self._abort.set()
                break
        for sink in self.sinks:
            sink.close()
        self._log_summary()
        if self._error is not None:
            if isinstance(self._error, IntentdError):
                raise self._error
            log.error("%s stage failed: %r", self._failed_stage, self._error)
            return 1
        return 0

    # --- stages ----------------------------------------------------------------------

    def _guard(self, stage: str, fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:
            if not isinstance(exc, IntentdError):
                log.exception("%s stage crashed", stage)
            if self._error is None:
                self._error, self._failed_stage = exc, stage
            if stage == "reader":
                # Let the rest drain what was read so far; the error is reported at exit.
                self._put_block(_EOF)
            else:
                self._abort.set()

    def _put_block(self, item: Any) -> None:
        put_unless(self._blocks, item, self._abort, poll_s=0.2)

    def _read_loop(self) -> None:
        try:
            while True:
                self.reader_heartbeat.beat()
                if self._stop.is_set():
                    log.info("stop requested: finishing the current utterance")
                    break
                block = self.source.read(READ_TIMEOUT_S)
                if block is None:
                    log.info("end of input")
                    break
                if block.shape[0]:
                    self._put_block(block)
        finally:
            # Only this thread touches the source after start(): no race with a read.
            with contextlib.suppress(Exception):
                self.source.stop()
        self._put_block(_EOF)

    # --- summary ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {"source": self.source.stats(), "segmenter": self.segmenter.stats(),
                "worker": self.worker.stats(), "sinks": [s.stats() for s in self.sinks]}

    def _log_summary(self) -> None:
        st = self.stats()
        src, seg, wk = st["source"], st["segmenter"], st["worker"]
        client_drops = [f"{c['client']}={c['dropped']}" for s in st["sinks"]
                        for c in s.get("clients", [])]
        log.info(
            "summary: %d blocks (%d dropped, %d overflows), %.1f s audio, %d utterances "
            "(%d discarded, %d pauses shortened), %d windows, events %s, latency median %s ms, "
            "client drops [%s]",
            src.get("blocks", 0), src.get("dropped_blocks", 0), src.get("overflows", 0),
            seg["samples_in"] / max(1, self.source.sample_rate_hz), seg["utterances"],
            seg["discarded"], seg["pauses_shortened"], wk["windows_classified"], wk["events"],
            wk["latency_ms_median"], ", ".join(client_drops))
