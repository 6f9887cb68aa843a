"""The model worker: the one thread that runs the model, for every stream of the engine.

It consumes the engine's bounded work queue (:mod:`.items`), taking each time one item and
whatever else is already waiting, and handles that batch in two passes:

1. state: windows of every stream are classified together (one model call); utterance
   audio feeds each utterance's scorer; discarded utterances are forgotten;
2. verdicts: the utterances that ended in this batch, of any stream, are scored together
   (``score_many``: one head call, one encoder call per group of equal length), then every
   event (verdicts, speech events, window events) goes to the router in queue order.

Per stream, events therefore keep the order the stream's stage produced them in.

Segmentation by the model: each utterance's pause and resume items drive its
:class:`~intentd.daemon.segmentation.splitter.CommandSplitter`, which may end commands at a
pause (early answers, splits); their verdicts go out at the pause item's place.

Model swap (:meth:`Worker.swap`): an utterance is judged by the backend it started with;
utterances that start after the swap use the new one, so no utterance is judged half by
one model. Settings (threshold, top_k, window events) apply from the next verdict.

The worker owns all of its state; other threads see only the queue, :meth:`swap`, the
heartbeat and :meth:`stats`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from intentd.daemon.engine.items import (
    AudioItem,
    DiscardItem,
    EndItem,
    EventItem,
    PauseItem,
    ResumeItem,
    StartItem,
    StreamEnded,
    WindowItem,
    _Stop,
)
from intentd.daemon.engine.latency import Latencies
from intentd.daemon.engine.settings import EventRouter, Recorder, WorkerSettings
from intentd.daemon.engine.verdict import (
    Where,
    combine_windows,
    event_kind,
    intent_event,
    scored,
    top_k,
)
from intentd.daemon.model.backend import ModelBackend, UtteranceScorer, score_many
from intentd.daemon.output.events import Event, IntentEvent, WindowEvent
from intentd.daemon.segmentation.splitter import Command, CommandSplitter, Scored

__all__ = ["Worker", "WorkerSettings", "combine_windows", "top_k"]

log = logging.getLogger(__name__)

@dataclass
class _Utterance:
    backend: ModelBackend
    window_probs: list[np.ndarray] = field(default_factory=list)
    scorer: UtteranceScorer | None = None
    audio: list[np.ndarray] = field(default_factory=list)  # for the recorder only
    splitter: CommandSplitter | None = None  # segmentation by the model


class Worker:
    """Thread target: ``threading.Thread(target=worker.run)``; ends after ``STOP``."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: WorkerSettings,
        router: EventRouter,
        inbox: queue.Queue[Any],
        model_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_stream_ended: Callable[[StreamEnded], None] | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.router = router
        self.inbox = inbox
        self.model_name = model_name or backend.name
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_stream_ended = on_stream_ended
        self.recorder = recorder  # output.save_utterances_dir: gets each utterance's audio
        self._utts: dict[tuple[str, int], _Utterance] = {}
        self._swap_lock = threading.Lock()
        self._pending: tuple[ModelBackend, WorkerSettings, str, threading.Event] | None = None
        # Counters and heartbeat: written here only; read by the engine for the summary and
        # the health check (a stalled worker stops beating).
        self.heartbeat = clock()
        self.windows_classified = 0
        self.batches = 0
        self.verdict_batches = 0
        self.utterances = 0
        self.events = {"intent": 0, "no_match": 0, "speech_start": 0, "speech_end": 0,
                       "window": 0, "stats": 0}
        self.latencies = Latencies()

    # --- control (any thread) -------------------------------------------------------

    def swap(self, backend: ModelBackend, settings: WorkerSettings,
             model_name: str | None = None) -> threading.Event:
        """Hand over a new model and settings; the returned event is set once in effect."""
        done = threading.Event()
        with self._swap_lock:
            self._pending = (backend, settings, model_name or backend.name, done)
        return done

    # --- main loop ------------------------------------------------------------------

    def run(self) -> None:
        while True:
            items = self._next_items()
            self.heartbeat = self._clock()
            self._apply_swap()
            if not self._handle(items):
                break
        self._apply_swap()
        if self._utts:
            log.warning("worker stopped with %d unfinished utterance(s); not classified",
                        len(self._utts))
            self._utts.clear()

    def _apply_swap(self) -> None:
        if self._pending is None:
            return
        with self._swap_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self.backend, self.settings, self.model_name, done = pending
        log.info("model %s in effect for new utterances", self.model_name)
        done.set()

    def _next_items(self) -> list[Any]:
        """One blocking get, then whatever else is already waiting (bounded batch)."""
        while True:
            try:
                first = self.inbox.get(timeout=1.0)
                break
            except queue.Empty:
                self.heartbeat = self._clock()  # idle is healthy
                self._apply_swap()
        items = [first]
        n_windows = int(isinstance(first, WindowItem))
        while n_windows < self.settings.max_batch_windows and not isinstance(items[-1], _Stop):
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            n_windows += isinstance(item, WindowItem)
        return items

    def _handle(self, items: list[Any]) -> bool:
        """Process one batch (module docstring); False after STOP."""
        windows = [it for it in items if isinstance(it, WindowItem)]
        window_probs = self._classify(windows)
        at_pause: dict[int, list[tuple[IntentEvent, np.ndarray | None]]] = {}
        for item in items:
            if isinstance(item, StartItem):
                self._start(item)
            elif isinstance(item, AudioItem):
                self._push_audio(item)
            elif isinstance(item, PauseItem | ResumeItem):
                at_pause[id(item)] = self._pause(item)
            elif isinstance(item, DiscardItem):
                self._utts.pop((item.stream, item.utterance_id), None)
        ends = [it for it in items if isinstance(it, EndItem)]
        verdicts = self._verdicts(ends) if ends else {}
        wi = 0
        for item in items:
            if isinstance(item, WindowItem):
                probs = window_probs[wi]
                wi += 1
                if self.settings.window_events:
                    self._emit_window(item, probs)
            elif isinstance(item, EndItem):
                for event, audio in verdicts[id(item)]:
                    self._verdict(event, audio)
            elif isinstance(item, PauseItem | ResumeItem):
                for event, audio in at_pause[id(item)]:
                    self._verdict(event, audio)
            elif isinstance(item, EventItem):
                self._emit(item.event)
            elif isinstance(item, StreamEnded):
                self._end_stream(item)
            elif isinstance(item, _Stop):
                return False
            elif not isinstance(item, AudioItem | DiscardItem | StartItem):
                raise TypeError(f"worker: unexpected item {type(item).__name__}")
        return True

    # --- pass 1: state --------------------------------------------------------------

    def _state(self, stream: str, utterance_id: int) -> _Utterance:
        key = (stream, utterance_id)
        utt = self._utts.get(key)
        if utt is None:
            utt = self._utts[key] = _Utterance(self.backend)
        return utt

    def _classify(self, windows: list[WindowItem]) -> list[np.ndarray]:
        """Windows of every stream, one model call per backend in use."""
        out: list[np.ndarray] = [np.zeros(0)] * len(windows)
        groups: dict[int, list[int]] = {}
        utts = [self._state(w.stream, w.utterance_id) for w in windows]
        for i, utt in enumerate(utts):
            groups.setdefault(id(utt.backend), []).append(i)
        for idx in groups.values():
            backend = utts[idx[0]].backend
            batch = np.stack([np.asarray(windows[i].window, dtype=np.float32) for i in idx])
            probs = np.asarray(backend.classify_windows(batch), dtype=np.float64)
            if probs.shape != (len(idx), len(backend.labels)):
                raise RuntimeError(f"backend {backend.name} returned probabilities of shape "
                                   f"{probs.shape} for {len(idx)} window(s) and "
                                   f"{len(backend.labels)} labels")
            for j, i in enumerate(idx):
                out[i] = probs[j]
                utts[i].window_probs.append(probs[j])
            self.windows_classified += len(idx)
            self.batches += 1
        return out

    def _start(self, item: StartItem) -> None:
        key = (item.stream, item.utterance_id)
        utt = self._utts[key] = _Utterance(self.backend)
        seg = self.settings.segmentation
        if seg.by_model and self.settings.verdict == "utterance":
            backend = utt.backend
            utt.splitter = CommandSplitter(
                seg, lambda audio: self._score(backend, audio),
                item.utterance_id, item.voiced_start_sample, item.start_sample,
                self.settings.min_speech_samples)

    def _score(self, backend: ModelBackend, audio: np.ndarray) -> Scored:
        scorer = backend.utterance_scorer()
        scorer.push(audio)
        probs, slot_probs = score_many(backend, [scorer])
        return scored(backend, probs[0], None if slot_probs is None else slot_probs[0])

    def _push_audio(self, item: AudioItem) -> None:
        utt = self._state(item.stream, item.utterance_id)
        samples = np.asarray(item.samples, dtype=np.float32)
        if utt.splitter is not None:
            utt.splitter.push(item.start_sample, samples)
            return
        if utt.scorer is None:
            utt.scorer = utt.backend.utterance_scorer()
        utt.scorer.push(samples)
        if self.recorder is not None:
            utt.audio.append(samples)

    def _pause(self, item: PauseItem | ResumeItem
               ) -> list[tuple[IntentEvent, np.ndarray | None]]:
        utt = self._utts.get((item.stream, item.utterance_id))
        if utt is None or utt.splitter is None:
            return []
        if isinstance(item, ResumeItem):
            utt.splitter.resume(item.voiced_start_sample, item.part_id, item.pre)
            return []
        commands = utt.splitter.pause(item.voiced_end_sample, item.silent_ms,
                                      item.heard_sample, item.post)
        return [(self._command_event(utt, c, item), c.audio) for c in commands]

    # --- pass 2: verdicts -----------------------------------------------------------

    def _verdicts(self, ends: list[EndItem]
                  ) -> dict[int, list[tuple[IntentEvent, np.ndarray | None]]]:
        """The events (with their audio for the recorder) of each EndItem (keyed by
        ``id``), utterance scorers batched: a verdict still to be scored holds its place
        in its item's list until its batch is done."""
        out: dict[int, list[Any]] = {}
        todo: dict[int, list[tuple[list[Any], int, UtteranceScorer, _Utterance, Any]]] = {}
        for item in ends:
            utt = self._utts.pop((item.stream, item.utterance_id), None) or _Utterance(
                self.backend)
            events = out[id(item)] = []
            batch = todo.setdefault(id(utt.backend), [])
            if utt.splitter is not None:
                for c in utt.splitter.end(item.end_sample, item.audio_end, item.reason,
                                          item.decided):
                    if c.scored is None:
                        scorer = utt.backend.utterance_scorer()
                        scorer.push(c.audio)
                        batch.append((events, len(events), scorer, utt, (c, item)))
                        events.append(None)
                    else:
                        events.append((self._command_event(utt, c, item), c.audio))
            elif self.settings.verdict == "utterance" and utt.scorer is not None:
                batch.append((events, len(events), utt.scorer, utt, item))
                events.append(None)
            else:
                probs = self._window_verdict(utt, len(utt.backend.labels))
                events.append((self._end_event(utt, item, probs, None), None))
        for group in filter(None, todo.values()):
            backend = group[0][3].backend
            probs, slot_probs = score_many(backend, [scorer for _, _, scorer, _, _ in group])
            for i, (events, at, _, utt, what) in enumerate(group):
                sp = None if slot_probs is None else slot_probs[i]
                if isinstance(what, EndItem):
                    events[at] = (self._end_event(utt, what, probs[i], sp),
                                  np.concatenate(utt.audio) if utt.audio else None)
                else:
                    c, item = what
                    c = replace(c, scored=scored(backend, probs[i], sp))
                    events[at] = (self._command_event(utt, c, item), c.audio)
            self.verdict_batches += 1
        return out

    def _window_verdict(self, utt: _Utterance, n_labels: int) -> np.ndarray:
        rule = self.settings.verdict
        if utt.window_probs:
            return combine_windows(np.stack(utt.window_probs),
                                   "mean" if rule == "utterance" else rule)
        if rule != "utterance":
            log.warning("utterance without windows under the %r rule; reporting no_match",
                        rule)
        return np.full(n_labels, 1.0 / max(1, n_labels))

    def _end_event(self, utt: _Utterance, item: EndItem, probs: np.ndarray,
                   slot_probs: np.ndarray | None) -> IntentEvent:
        """The verdict of an utterance the VAD alone ended."""
        rate = self.settings.sample_rate_hz
        where = Where(item.utterance_id, item.stream, item.start_sample / rate,
                      item.end_sample / rate, item.reason, item.decided / rate, item.windows,
                      item.call)
        return self._event(utt, probs, slot_probs, where, item.end_wall_time)

    def _command_event(self, utt: _Utterance, c: Command, item: PauseItem | EndItem
                       ) -> IntentEvent:
        """The verdict of a command the splitter ended at ``item`` (an EndItem's windows go
        to the last command)."""
        assert c.scored is not None
        rate = self.settings.sample_rate_hz
        windows = item.windows if isinstance(item, EndItem) else 0
        where = Where(c.utterance_id, item.stream, c.start_sample / rate, c.end_sample / rate,
                      c.end, c.decided_sample / rate, windows, item.call)
        return self._event(utt, c.scored.probs, c.scored.slot_probs, where,
                           item.end_wall_time)

    def _event(self, utt: _Utterance, probs: np.ndarray, slot_probs: np.ndarray | None,
               where: Where, seen: float) -> IntentEvent:
        latency_ms = max(0.0, (self._clock() - seen) * 1000.0)
        model = utt.backend.name if utt.backend is not self.backend else self.model_name
        return intent_event(utt.backend, probs, slot_probs, where, self.settings.threshold,
                            self.settings.top_k, latency_ms, self._wall_clock(), model)

    def _verdict(self, event: IntentEvent, audio: np.ndarray | None) -> None:
        self.utterances += 1
        self.latencies.add(event.latency_ms)
        log.debug("utterance %s/%d (%s): %s %.3f after %.1f ms", event.stream,
                  event.utterance_id, event.end, event.intent, event.score, event.latency_ms)
        self._emit(event)
        if self.recorder is not None and audio is not None and audio.size:
            self.recorder.submit(event, audio)

    def _emit_window(self, item: WindowItem, probs: np.ndarray) -> None:
        utt = self._utts.get((item.stream, item.utterance_id))
        labels = tuple((utt.backend if utt else self.backend).labels)
        rate = self.settings.sample_rate_hz
        n = np.asarray(item.window).shape[0]
        self._emit(WindowEvent(item.utterance_id, item.stream, item.start_sample / rate,
                               (item.start_sample + n) / rate,
                               top_k(probs, labels, self.settings.top_k), self._wall_clock()))

    def _end_stream(self, item: StreamEnded) -> None:
        left = [k for k in self._utts if k[0] == item.stream]
        for key in left:  # a stream that stopped mid-utterance: nothing more will come
            del self._utts[key]
        if self._on_stream_ended is not None:
            self._on_stream_ended(item)

    def _emit(self, event: Event) -> None:
        self.events[event_kind(event)] += 1
        self.router.emit(event)

    def stats(self) -> dict[str, Any]:
        return {
            "utterances": self.utterances,
            "open_utterances": len(self._utts),
            "events": dict(self.events),
            "windows_classified": self.windows_classified,
            "batches": self.batches,
            "verdict_batches": self.verdict_batches,
            "latency_ms_median": self.latencies.median_ms(),
            "latency_ms_max": self.latencies.max_ms(),
        }
