"""The model worker: the one thread that runs the model, for every stream of the engine.

It consumes the engine's bounded work queue (:mod:`.items`), taking each time one item and
whatever else is already waiting, and handles that batch in two passes:

1. state: windows of every stream are classified together (one model call); utterance
   audio feeds each utterance's scorer; discarded utterances are forgotten;
2. verdicts: the utterances that ended in this batch, of any stream, are scored together
   (``score_many``: one head call, one encoder call per group of equal length), then every
   event (verdicts, speech events, window events) goes to the router in queue order.

Per stream, events therefore keep the order the stream's stage produced them in.

Model swap (:meth:`Worker.swap`): an utterance is judged by the backend it started with;
utterances that start after the swap use the new one, so no utterance is judged half by
one model. Settings (threshold, top_k, window events) apply from the next verdict.

The worker owns all of its state; other threads see only the queue, :meth:`swap`, the
heartbeat and :meth:`stats`.
"""

from __future__ import annotations

import bisect
import collections
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from intentd.daemon.engine.items import (
    AudioItem,
    DiscardItem,
    EndItem,
    EventItem,
    StreamEnded,
    WindowItem,
    _Stop,
)
from intentd.daemon.model.backend import ModelBackend, UtteranceScorer, score_many
from intentd.daemon.output.events import (
    REJECT_LABEL,
    Event,
    IntentEvent,
    LabelScore,
    SlotScore,
    WindowEvent,
)

log = logging.getLogger(__name__)

VERDICT_RULES = ("utterance", "mean", "max")
LATENCY_KEEP = 1000  # latest verdict latencies kept for the median (bounded memory)
# Upper bounds (ms) of the cumulative verdict-latency histogram (metrics); +inf is implied.
LATENCY_BUCKETS_MS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


class EventRouter(Protocol):
    def emit(self, event: Event) -> None: ...


class Recorder(Protocol):
    def submit(self, event: IntentEvent, audio: np.ndarray) -> None: ...


@dataclass(frozen=True)
class WorkerSettings:
    verdict: str = "utterance"
    threshold: float = 0.5
    top_k: int = 3
    sample_rate_hz: int = 16000  # rate of the sample indices in the items
    max_batch_windows: int = 16
    window_events: bool = False

    def __post_init__(self) -> None:
        if self.verdict not in VERDICT_RULES:
            raise ValueError(f"verdict must be one of {VERDICT_RULES}, got {self.verdict!r}")

    @property
    def needs_windows(self) -> bool:
        """Windows go through the model only when something uses their scores."""
        return self.verdict != "utterance" or self.window_events


@dataclass
class _Utterance:
    backend: ModelBackend
    window_probs: list[np.ndarray] = field(default_factory=list)
    scorer: UtteranceScorer | None = None
    audio: list[np.ndarray] = field(default_factory=list)  # for the recorder only


def combine_windows(window_probs: np.ndarray, rule: str) -> np.ndarray:
    """Verdict probabilities from per-window probabilities ``[n, L]`` (``mean`` / ``max``).

    ``max`` takes each label's best window and renormalizes, so a short command inside a
    long utterance is not averaged away.
    """
    p = np.asarray(window_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"need [n>0, labels] window probabilities, got shape {p.shape}")
    if rule == "mean":
        out = p.mean(axis=0)
    elif rule == "max":
        out = p.max(axis=0)
        total = out.sum()
        out = out / total if total > 0 else np.full_like(out, 1.0 / out.size)
    else:
        raise ValueError(f"combine_windows handles 'mean' and 'max', got {rule!r}")
    return out


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> tuple[LabelScore, ...]:
    """Best ``k`` labels, highest first; ties keep the model's label order."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[: max(1, k)]
    return tuple(LabelScore(labels[i], float(p[i])) for i in order)


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
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_KEEP)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # per bucket, last: +inf
        self.latency_sum_ms = 0.0

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
        for item in items:
            if isinstance(item, AudioItem):
                self._push_audio(item)
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
                self._finish(item, *verdicts[id(item)])
            elif isinstance(item, EventItem):
                self._emit(item.event)
            elif isinstance(item, StreamEnded):
                self._end_stream(item)
            elif isinstance(item, _Stop):
                return False
            elif not isinstance(item, AudioItem | DiscardItem):
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

    def _push_audio(self, item: AudioItem) -> None:
        utt = self._state(item.stream, item.utterance_id)
        if utt.scorer is None:
            utt.scorer = utt.backend.utterance_scorer()
        utt.scorer.push(np.asarray(item.samples, dtype=np.float32))
        if self.recorder is not None:
            utt.audio.append(np.asarray(item.samples, dtype=np.float32))

    # --- pass 2: verdicts -----------------------------------------------------------

    def _verdicts(self, ends: list[EndItem]
                  ) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """(probabilities, slot probabilities or None) per EndItem (keyed by ``id``),
        utterance scorers batched."""
        out: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        by_backend: dict[int, list[tuple[EndItem, _Utterance]]] = {}
        for item in ends:
            utt = self._utts.get((item.stream, item.utterance_id)) or _Utterance(self.backend)
            if self.settings.verdict == "utterance" and utt.scorer is not None:
                by_backend.setdefault(id(utt.backend), []).append((item, utt))
            else:
                out[id(item)] = self._window_verdict(utt, len(utt.backend.labels)), None
        for group in by_backend.values():
            backend = group[0][1].backend
            probs, slot_probs = score_many(backend,
                                           [utt.scorer for _, utt in group])  # type: ignore[misc]
            for i, ((item, _), p) in enumerate(zip(group, probs, strict=True)):
                out[id(item)] = p, None if slot_probs is None else slot_probs[i]
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

    def _finish(self, item: EndItem, probs: np.ndarray,
                slot_probs: np.ndarray | None = None) -> None:
        utt = self._utts.pop((item.stream, item.utterance_id), None) or _Utterance(self.backend)
        labels = tuple(utt.backend.labels)
        top = top_k(probs, labels, self.settings.top_k)
        best = top[0]
        matched = best.score >= self.settings.threshold and best.intent != REJECT_LABEL
        rate = self.settings.sample_rate_hz
        latency_ms = max(0.0, (self._clock() - item.end_wall_time) * 1000.0)
        slots = _slots(utt.backend, best.intent if matched else None, slot_probs)
        sentences = getattr(utt.backend, "sentences", None)
        text = None
        if sentences is not None:
            text = (sentences.render(best.intent, {s.name: s.value for s in slots or ()})
                    if matched else "")
        event = IntentEvent(
            type="intent" if matched else "no_match",
            intent=best.intent if matched else None,
            score=best.score,
            top=top,
            utterance_id=item.utterance_id,
            stream=item.stream,
            start_s=item.start_sample / rate,
            end_s=item.end_sample / rate,
            windows=item.windows,
            latency_ms=latency_ms,
            ts=self._wall_clock(),
            model=utt.backend.name if utt.backend is not self.backend else self.model_name,
            slots=slots,
            text=text,
            call=item.call,
        )
        self.utterances += 1
        self._latencies.append(latency_ms)
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum_ms += latency_ms
        log.debug("utterance %s/%d (%s): %s %.3f after %.1f ms", item.stream,
                  item.utterance_id, item.reason, best.intent, best.score, latency_ms)
        self._emit(event)
        if self.recorder is not None and utt.audio:
            self.recorder.submit(event, np.concatenate(utt.audio))

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
        lat = list(self._latencies)
        return {
            "utterances": self.utterances,
            "open_utterances": len(self._utts),
            "events": dict(self.events),
            "windows_classified": self.windows_classified,
            "batches": self.batches,
            "verdict_batches": self.verdict_batches,
            "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
            "latency_ms_max": round(max(lat), 1) if lat else None,
        }


def _slots(backend: ModelBackend, intent: str | None, slot_probs: np.ndarray | None
           ) -> tuple[SlotScore, ...] | None:
    """The event's slots: None for a model without slot heads; the slots ``intent`` can
    take that were heard otherwise (none for a no_match, or under a window verdict)."""
    space = getattr(backend, "slot_space", None)
    if space is None:
        return None
    if slot_probs is None:
        return ()
    sentences = getattr(backend, "sentences", None)
    return tuple(SlotScore(f.name, f.value, f.score,
                           sentences.text_of(f.name, f.value) if sentences else None)
                 for f in space.decode(intent, slot_probs))


def event_kind(event: Event) -> str:
    return event.type if isinstance(event, IntentEvent) else event.TYPE
