"""The model worker: the one thread that runs the model and emits events.

It consumes a bounded queue of work items produced by the segmenter stage:

- :class:`WindowItem` — a window of an utterance, classified as soon as it arrives (during
  speech); windows already waiting in the queue are classified together in one batch;
- :class:`AudioItem` — utterance samples fed incrementally to the backend's utterance
  scorer (``utterance`` verdict rule), so the end of speech only has to finish the job;
- :class:`EndItem` — end of an utterance: combine the evidence by the verdict rule, build
  the :class:`~intentd.daemon.output.events.IntentEvent` and hand its JSON line to the sinks;
- :class:`DiscardItem` — forget an utterance the segmenter rejected;
- :class:`EventItem` — an already-built event (speech_start/speech_end) to emit in order;
- :data:`STOP` — finish.

Every item names its ``stream`` and utterance state is keyed by ``(stream, utterance_id)``,
so a later version can serve several inputs with one model through one worker. The worker
owns all of its state; nothing here is shared with other threads except the queue.
"""

from __future__ import annotations

import logging
import queue
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from intentd.daemon.model.backend import ModelBackend, UtteranceScorer
from intentd.daemon.output.events import (
    REJECT_LABEL,
    Event,
    IntentEvent,
    LabelScore,
    SpeechStartEvent,
    to_json_line,
)
from intentd.daemon.output.sinks import Sink

log = logging.getLogger(__name__)

VERDICT_RULES = ("utterance", "mean", "max")


@dataclass(frozen=True)
class WindowItem:
    stream: str
    utterance_id: int
    start_sample: int  # window start, stream-global sample index
    window: np.ndarray  # [window_samples] float32


@dataclass(frozen=True)
class AudioItem:
    stream: str
    utterance_id: int
    samples: np.ndarray  # next utterance samples, float32 mono


@dataclass(frozen=True)
class EndItem:
    stream: str
    utterance_id: int
    start_sample: int  # first speech sample (stream-global)
    end_sample: int  # one past the last speech sample
    end_wall_time: float  # time.monotonic() when the segmenter saw the end of speech
    reason: str


@dataclass(frozen=True)
class DiscardItem:
    stream: str
    utterance_id: int


@dataclass(frozen=True)
class EventItem:
    event: Event


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP = _Stop()

WorkItem = WindowItem | AudioItem | EndItem | DiscardItem | EventItem | _Stop


@dataclass(frozen=True)
class WorkerSettings:
    verdict: str = "utterance"
    threshold: float = 0.5
    top_k: int = 3
    sample_rate_hz: int = 16000  # rate of the sample indices in the items
    max_batch_windows: int = 16

    def __post_init__(self) -> None:
        if self.verdict not in VERDICT_RULES:
            raise ValueError(f"verdict must be one of {VERDICT_RULES}, got {self.verdict!r}")


@dataclass
class _Utterance:
    window_probs: list[np.ndarray] = field(default_factory=list)
    scorer: UtteranceScorer | None = None
    audio_samples: int = 0


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
    """Thread target: ``threading.Thread(target=worker.run)``; ends after :data:`STOP`."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: WorkerSettings,
        sinks: Sequence[Sink],
        inbox: queue.Queue[Any],
        model_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.sinks = list(sinks)
        self.inbox = inbox
        self.model_name = model_name or backend.name
        self._clock = clock
        self._wall_clock = wall_clock
        self._labels = tuple(backend.labels)
        self._utts: dict[tuple[str, int], _Utterance] = {}
        # Counters and heartbeat: written here only; read by the pipeline for the summary
        # and by a future watchdog (a stalled worker stops beating).
        self.heartbeat = clock()
        self.windows_classified = 0
        self.batches = 0
        self.utterances = 0
        self.events = {"intent": 0, "no_match": 0, "speech_start": 0, "speech_end": 0}
        self.latencies_ms: list[float] = []

    # --- main loop -------------------------------------------------------------------

    def run(self) -> None:
        while True:
            items = self._next_items()
            self.heartbeat = self._clock()
            if not self._handle(items):
                break
        if self._utts:
            log.warning("worker stopped with %d unfinished utterance(s); not classified",
                        len(self._utts))
            self._utts.clear()

    def _next_items(self) -> list[Any]:
        """One blocking get, then whatever else is already waiting (bounded batch)."""
        while True:
            try:
                first = self.inbox.get(timeout=1.0)
                break
            except queue.Empty:
                self.heartbeat = self._clock()  # idle is healthy
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
        """Process items in order; False after STOP."""
        windows = [it for it in items if isinstance(it, WindowItem)]
        probs = self._classify(windows) if windows else None
        wi = 0
        for item in items:
            if isinstance(item, WindowItem):
                assert probs is not None
                self._state(item.stream, item.utterance_id).window_probs.append(probs[wi])
                wi += 1
            elif isinstance(item, AudioItem):
                self._push_audio(item)
            elif isinstance(item, EndItem):
                self._finish(item)
            elif isinstance(item, DiscardItem):
                self._utts.pop((item.stream, item.utterance_id), None)
            elif isinstance(item, EventItem):
                self._emit_event(item.event)
            elif isinstance(item, _Stop):
                return False
            else:
                raise TypeError(f"worker: unexpected item {type(item).__name__}")
        return True

    # --- per-item work ---------------------------------------------------------------

    def _state(self, stream: str, utterance_id: int) -> _Utterance:
        key = (stream, utterance_id)
        utt = self._utts.get(key)
        if utt is None:
            utt = self._utts[key] = _Utterance()
        return utt

    def _classify(self, windows: list[WindowItem]) -> np.ndarray:
        batch = np.stack([np.asarray(w.window, dtype=np.float32) for w in windows])
        probs = np.asarray(self.backend.classify_windows(batch), dtype=np.float64)
        if probs.shape != (len(windows), len(self._labels)):
            raise RuntimeError(f"backend {self.backend.name} returned probabilities of shape "
                               f"{probs.shape} for {len(windows)} window(s) and "
                               f"{len(self._labels)} labels")
        self.windows_classified += len(windows)
        self.batches += 1
        return probs

    def _push_audio(self, item: AudioItem) -> None:
        utt = self._state(item.stream, item.utterance_id)
        if utt.scorer is None:
            utt.scorer = self.backend.utterance_scorer()
        utt.scorer.push(np.asarray(item.samples, dtype=np.float32))
        utt.audio_samples += int(np.asarray(item.samples).size)

    def _verdict(self, utt: _Utterance) -> np.ndarray:
        rule = self.settings.verdict
        if rule == "utterance" and utt.scorer is not None:
            return np.asarray(utt.scorer.result(), dtype=np.float64)
        if utt.window_probs:
            return combine_windows(np.stack(utt.window_probs), "mean" if rule == "utterance"
                                   else rule)
        if rule != "utterance":
            log.warning("utterance without windows under the %r rule; reporting no_match",
                        rule)
        return np.full(len(self._labels), 1.0 / max(1, len(self._labels)))

    def _finish(self, item: EndItem) -> None:
        utt = self._utts.pop((item.stream, item.utterance_id), None) or _Utterance()
        probs = self._verdict(utt)
        top = top_k(probs, self._labels, self.settings.top_k)
        best = top[0]
        matched = best.score >= self.settings.threshold and best.intent != REJECT_LABEL
        rate = self.settings.sample_rate_hz
        latency_ms = (self._clock() - item.end_wall_time) * 1000.0
        event = IntentEvent(
            type="intent" if matched else "no_match",
            intent=best.intent if matched else None,
            score=best.score,
            top=top,
            utterance_id=item.utterance_id,
            stream=item.stream,
            start_s=item.start_sample / rate,
            end_s=item.end_sample / rate,
            windows=len(utt.window_probs),
            latency_ms=max(0.0, latency_ms),
            ts=self._wall_clock(),
            model=self.model_name,
        )
        self.utterances += 1
        self.latencies_ms.append(event.latency_ms)
        log.debug("utterance %s/%d (%s): %s %.3f after %.1f ms", item.stream,
                  item.utterance_id, item.reason, best.intent, best.score, event.latency_ms)
        self._emit_event(event)

    def _emit_event(self, event: Event) -> None:
        line = to_json_line(event)
        if isinstance(event, IntentEvent):
            kind = event.type
        else:
            kind = "speech_start" if isinstance(event, SpeechStartEvent) else "speech_end"
        self.events[kind] += 1
        for sink in self.sinks:
            try:
                sink.emit(line)
            except Exception:
                # One failing transport must not silence the others or kill the model.
                log.exception("sink %s failed to emit an event", getattr(sink, "name", sink))

    def stats(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "utterances": self.utterances,
            "events": dict(self.events),
            "windows_classified": self.windows_classified,
            "batches": self.batches,
            "latency_ms_median": round(statistics.median(lat), 1) if lat else None,
            "latency_ms_max": round(max(lat), 1) if lat else None,
        }
