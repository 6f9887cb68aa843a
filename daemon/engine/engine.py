"""The engine: many input streams, one model worker, one event router.

::

    stream thread × N   source → resample → VAD segmenter → windows     (one per input)
                        ──► work queue (bounded, model.queue_windows, shared)
    worker thread       batches across streams → verdicts → router → sinks

Streams come and go at run time (:meth:`Engine.add_stream`, :meth:`Engine.remove_stream`);
one that ends or fails does not disturb the others. The worker reports each stream's end
back (:class:`~intentd.daemon.engine.items.StreamEnded`), so the engine knows when every
event of a stream has been emitted.

Stopping: :meth:`Engine.stop` asks every stream to finish its current utterance and waits
up to ``grace_s`` for the worker to emit what they heard; past that the rest is abandoned
(logged), so a service still exits within 2 s of SIGTERM.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from intentd.daemon.audio.sources import AudioSource
from intentd.daemon.config import Config
from intentd.daemon.engine.handover import put_unless
from intentd.daemon.engine.items import STOP, EventItem, StreamEnded
from intentd.daemon.engine.stream import StreamSettings, StreamStage
from intentd.daemon.engine.worker import EventRouter, Recorder, Worker, WorkerSettings
from intentd.daemon.errors import ConfigError
from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import REJECT_LABEL, CallInfo, Event

log = logging.getLogger(__name__)

DRAIN_GRACE_S = 1.2  # + sink flush (0.5 s) stays under the 2 s exit promise


@dataclass(frozen=True)
class EngineSettings:
    worker: WorkerSettings
    stream: StreamSettings
    queue_items: int = 64


class Engine:
    """Owns the stream threads and the worker thread; thread-safe control methods."""

    def __init__(self, backend: ModelBackend, settings: EngineSettings, router: EventRouter,
                 model_name: str | None = None, recorder: Recorder | None = None) -> None:
        self.settings = settings
        self._work: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_items)
        self._abort = threading.Event()
        self._lock = threading.Condition()
        self._streams: dict[str, StreamStage] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._done: dict[str, StreamEnded] = {}  # streams whose last item the worker handled
        self._end_listeners: list[Callable[[StreamEnded], None]] = []
        self.worker = Worker(backend, settings.worker, router, self._work,
                             model_name=model_name, on_stream_ended=self._stream_ended,
                             recorder=recorder)
        self._worker_thread = threading.Thread(target=self._run_worker, name="intentd-worker",
                                               daemon=True)
        self.worker_error: BaseException | None = None
        self.aborted = False

    @property
    def rate_hz(self) -> int:
        return self.worker.settings.sample_rate_hz

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._worker_thread.start()

    def add_stream(self, name: str, source: AudioSource,
                   call: CallInfo | None = None) -> StreamStage:
        """Start a stream thread for ``source``; its events carry ``stream = name`` (and
        ``call``, for a phone call's track)."""
        with self._lock:
            if name in self._streams and name not in self._done:
                raise ConfigError(f"a stream named {name!r} is already running")
            stage = StreamStage(name, source, self.settings.stream, self.rate_hz, self._work,
                                self._abort, call)
            self._streams[name] = stage
            self._done.pop(name, None)
            thread = threading.Thread(target=stage.run, name=f"intentd-stream-{name}",
                                      daemon=True)
            self._threads[name] = thread
        thread.start()
        log.info("stream %s: %s (%d Hz, %d ch)", name, source.name, source.sample_rate_hz,
                 source.channels)
        return stage

    def remove_stream(self, name: str) -> None:
        """Ask a stream to end (its current utterance is finished first)."""
        with self._lock:
            stage = self._streams.get(name)
        if stage is not None:
            stage.request_stop()

    def forget_stream(self, name: str) -> bool:
        """Drop an ended stream's stage (a server's streams come and go all day: kept, they
        would grow the figures without bound). False, keeping it, while it still runs."""
        with self._lock:
            if name not in self._done:
                return False
            self._streams.pop(name, None)
            self._threads.pop(name, None)
            self._done.pop(name, None)
        return True

    def on_stream_ended(self, listener: Callable[[StreamEnded], None]) -> None:
        """Call ``listener`` (in the worker thread) once every event of a stream has been
        emitted; it must not block."""
        self._end_listeners.append(listener)

    def wait_streams(self, names: list[str] | None = None, timeout_s: float | None = None,
                     stop: threading.Event | None = None) -> bool:
        """Block until the streams (default: all) have had every event emitted.

        Returns False on timeout, when ``stop`` is set, or when the worker died."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while True:
                wanted = list(self._streams) if names is None else names
                if all(n in self._done for n in wanted):
                    return True
                if not self._worker_thread.is_alive() or (stop is not None and stop.is_set()):
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # Stream ends and a worker crash notify; the timeout only bounds how late
                # a stop request or a quietly ended worker is seen.
                self._lock.wait(0.2 if left is None else min(0.2, left))

    def stop(self, grace_s: float = DRAIN_GRACE_S) -> bool:
        """Finish every stream's current utterance, then stop the worker. True if drained."""
        with self._lock:
            stages = list(self._streams.values())
        for stage in stages:
            stage.request_stop()
        if not self.wait_streams(timeout_s=grace_s):
            if self._worker_thread.is_alive():
                log.warning("shutdown: the model did not finish within %.1f s; abandoning "
                            "the rest of the current utterances", grace_s)
            self.aborted = True
            self._abort.set()
            return False
        put_unless(self._work, STOP, self._abort, poll_s=0.1)
        self._worker_thread.join(grace_s)
        for thread in list(self._threads.values()):
            thread.join(0.2)
        return True

    def abort(self) -> None:
        """Give up now: unblock every hand-over (a dead stage cannot drain)."""
        self._abort.set()

    # --- control --------------------------------------------------------------------

    def swap(self, backend: ModelBackend, settings: EngineSettings,
             model_name: str | None = None) -> threading.Event:
        """A new model and settings, between utterances (see the worker and the stage)."""
        if backend.sample_rate_hz != self.rate_hz:
            raise ConfigError(f"the new model runs at {backend.sample_rate_hz} Hz, the running "
                              f"one at {self.rate_hz} Hz; restart intentd to change the rate")
        with self._lock:
            self.settings = settings
            for stage in self._streams.values():
                stage.reconfigure(settings.stream)
        return self.worker.swap(backend, settings.worker, model_name)

    # --- figures --------------------------------------------------------------------

    def post(self, event: Event) -> bool:
        """Hand ``event`` to the worker, which emits it in order with the others (sinks have
        one producer); False, dropping it, when the work queue is full right now."""
        try:
            self._work.put_nowait(EventItem(event))
        except queue.Full:
            return False
        return True

    def queue_items(self) -> int:
        return self._work.qsize()

    def streams(self) -> dict[str, StreamStage]:
        with self._lock:
            return dict(self._streams)

    def ended(self) -> dict[str, StreamEnded]:
        with self._lock:
            return dict(self._done)

    def health(self) -> dict[str, float]:
        """Seconds since each stage last made progress (or idled normally)."""
        now = time.monotonic()
        out = {"worker": now - self.worker.heartbeat}
        for name, stage in self.streams().items():
            if stage.state == "running":
                out[f"stream:{name}"] = now - stage.heartbeat
        return out

    @property
    def worker_alive(self) -> bool:
        return self._worker_thread.is_alive()

    # --- threads --------------------------------------------------------------------

    def _run_worker(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            log.exception("the model worker crashed; stopping every stream")
            self.worker_error = exc
            self._abort.set()
            with self._lock:
                self._lock.notify_all()

    def _stream_ended(self, item: StreamEnded) -> None:
        """Called by the worker once a stream's last item is handled."""
        with self._lock:
            self._done[item.stream] = item
            self._lock.notify_all()
        for listener in self._end_listeners:
            try:
                listener(item)
            except Exception:
                log.exception("a stream-end listener failed (stream %s)", item.stream)


def engine_settings(cfg: Config, backend: ModelBackend) -> EngineSettings:
    """The engine's view of the config for ``backend``."""
    rate_hz = backend.sample_rate_hz
    seg = cfg.segmentation
    # The model weighs pauses under the utterance verdict, and only a model with the
    # rejection class can say that what it heard is no command (yet): else silence decides.
    by_model = (seg.by_model and cfg.model.verdict == "utterance"
                and REJECT_LABEL in backend.labels)
    if seg.by_model and not by_model:
        log.info("segmentation by silence alone: %s", "the model has no rejection class "
                 f"({REJECT_LABEL}) to tell an unfinished command" if cfg.model.verdict ==
                 "utterance" else f"the {cfg.model.verdict} verdict scores windows")
    worker = WorkerSettings(verdict=cfg.model.verdict, threshold=cfg.model.threshold,
                            top_k=cfg.model.top_k, sample_rate_hz=rate_hz,
                            window_events=cfg.output.window_events,
                            segmentation=seg if by_model else replace(seg, mode="silence"),
                            min_speech_samples=cfg.vad.min_speech_ms * rate_hz // 1000)
    stream = StreamSettings(vad=cfg.vad, windows=cfg.windows.spec(rate_hz),
                            send_audio=cfg.model.verdict == "utterance",
                            audio_at_end=not getattr(backend, "streams_audio", True),
                            send_windows=worker.needs_windows,
                            speech_events=cfg.output.speech_events,
                            pause_marks_ms=seg.pause_marks_ms(cfg.vad.min_pause_ms)
                            if by_model else ())
    return EngineSettings(worker=worker, stream=stream, queue_items=cfg.model.queue_windows)
