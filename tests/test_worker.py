"""Worker verdict rules with a fake backend: exact probabilities, events and ordering."""

from __future__ import annotations

import json
import queue
from typing import Any

import numpy as np
import pytest

from intentd.daemon.engine.items import (
    STOP,
    AudioItem,
    DiscardItem,
    EndItem,
    EventItem,
    StreamEnded,
    WindowItem,
)
from intentd.daemon.engine.worker import Worker, WorkerSettings, combine_windows, top_k
from intentd.daemon.output.events import REJECT_LABEL, Event, SpeechStartEvent, to_json_line
from intentd.daemon.output.router import Router

LABELS = ("alarm", "balance", "cancel")
# The fake model reads a window's first sample as an index into this table; the values are
# exact binary fractions so expected verdicts are exact.
WINDOW_PROBS = np.array([
    [0.5, 0.25, 0.25],
    [0.25, 0.625, 0.125],
    [0.125, 0.125, 0.75],
])
TS = 1714564800.0  # 2024-05-01T12:00:00Z


class FakeScorer:
    def __init__(self, log: list[np.ndarray], probs: np.ndarray) -> None:
        self.log = log
        self.probs = probs

    def push(self, samples: np.ndarray) -> None:
        self.log.append(np.asarray(samples).copy())

    def result(self) -> np.ndarray:
        return self.probs


class FakeBackend:
    name = "fake"
    labels = LABELS
    sample_rate_hz = 16000

    def __init__(self, name: str = "fake", utterance_probs: tuple[float, ...] = (
            0.125, 0.125, 0.75)) -> None:
        self.name = name
        self.utterance_probs = np.array(utterance_probs)
        self.batch_sizes: list[int] = []
        self.pushed: list[np.ndarray] = []
        self.scorers = 0

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(windows))
        return WINDOW_PROBS[windows[:, 0].astype(int)]

    def utterance_scorer(self) -> FakeScorer:
        self.scorers += 1
        return FakeScorer(self.pushed, self.utterance_probs)


class BatchingBackend(FakeBackend):
    """Offers score_many, as the compact backend does; records each call's size."""

    def __init__(self) -> None:
        super().__init__()
        self.verdict_batches: list[int] = []

    def score_many(self, scorers: list[FakeScorer]) -> np.ndarray:
        self.verdict_batches.append(len(scorers))
        return np.stack([s.result() for s in scorers])


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def start(self) -> None: ...

    def emit(self, event: Event) -> None:
        self.lines.append(to_json_line(event))

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {}


def _window(kind: int) -> np.ndarray:
    w = np.zeros(16000, dtype=np.float32)
    w[0] = kind
    return w


def _run(items: list[Any], **settings: Any) -> tuple[list[dict[str, Any]], FakeBackend, Worker]:
    backend = FakeBackend()
    sink = ListSink()
    q: queue.Queue[Any] = queue.Queue()
    for it in [*items, STOP]:
        q.put(it)
    worker = Worker(backend, WorkerSettings(**settings), Router([sink]), q, model_name="tiny",
                    clock=lambda: 100.25, wall_clock=lambda: TS)
    worker.run()
    return [json.loads(x) for x in sink.lines], backend, worker


def _utterance(uid: int, kinds: list[int], stream: str = "default") -> list[Any]:
    items: list[Any] = [WindowItem(stream, uid, 8000 * i, _window(k)) for i, k in enumerate(kinds)]
    items.append(EndItem(stream, uid, 16000, 40000, 100.0, "silence", len(kinds)))
    return items


def test_mean_rule_below_threshold_is_no_match_with_exact_line() -> None:
    backend = FakeBackend()
    sink = ListSink()
    q: queue.Queue[Any] = queue.Queue()
    for it in [*_utterance(4, [0, 1]), STOP]:
        q.put(it)
    Worker(backend, WorkerSettings(verdict="mean", threshold=0.5, top_k=3), Router([sink]), q,
           model_name="tiny", clock=lambda: 100.25, wall_clock=lambda: TS).run()
    # mean of the two windows = [0.375, 0.4375, 0.1875]
    assert sink.lines == [
        '{"v": 1, "type": "no_match", "intent": null, "score": 0.4375, "top": ['
        '{"intent": "balance", "score": 0.4375}, {"intent": "alarm", "score": 0.375}, '
        '{"intent": "cancel", "score": 0.1875}], "utterance_id": 4, "stream": "default", '
        '"start_s": 1.0, "end_s": 2.5, "end": "silence", "decided_s": 2.5, "windows": 2, '
        '"latency_ms": 250.0, '
        '"ts": "2024-05-01T12:00:00.000Z", "model": "tiny"}'
    ]


def test_mean_rule_above_threshold_is_intent() -> None:
    events, _, _ = _run(_utterance(0, [0, 1]), verdict="mean", threshold=0.4, top_k=2)
    assert events[0]["type"] == "intent"
    assert events[0]["intent"] == "balance"
    assert events[0]["top"] == [{"intent": "balance", "score": 0.4375},
                                {"intent": "alarm", "score": 0.375}]


def test_max_rule_renormalizes_per_label_maxima() -> None:
    events, _, _ = _run(_utterance(0, [0, 1]), verdict="max", threshold=0.4)
    # per-label max [0.5, 0.625, 0.25] / 1.375
    assert events[0]["intent"] == "balance"
    assert events[0]["top"] == [{"intent": "balance", "score": 0.4545},
                                {"intent": "alarm", "score": 0.3636},
                                {"intent": "cancel", "score": 0.1818}]
    np.testing.assert_allclose(combine_windows(WINDOW_PROBS[:2], "max"),
                               np.array([0.5, 0.625, 0.25]) / 1.375)


def test_utterance_rule_uses_the_scorer_fed_incrementally() -> None:
    a = np.full(4000, 0.1, dtype=np.float32)
    b = np.full(2000, 0.2, dtype=np.float32)
    items: list[Any] = [
        AudioItem("default", 0, a), WindowItem("default", 0, 0, _window(0)),
        AudioItem("default", 0, b), EndItem("default", 0, 0, 6000, 100.0, "silence", 1),
    ]
    events, backend, _ = _run(items, verdict="utterance", threshold=0.5)
    assert backend.scorers == 1
    assert [x.size for x in backend.pushed] == [4000, 2000]
    assert (events[0]["type"], events[0]["intent"], events[0]["score"]) == (
        "intent", "cancel", 0.75)
    assert events[0]["windows"] == 1  # windows cut, though none needed the model here


def test_top_k_ordering_and_ties_keep_label_order() -> None:
    assert top_k(np.array([0.25, 0.5, 0.25]), LABELS, 3) == top_k(
        np.array([0.25, 0.5, 0.25]), LABELS, 5)
    ranked = top_k(np.array([0.25, 0.5, 0.25]), LABELS, 3)
    assert [(t.intent, t.score) for t in ranked] == [
        ("balance", 0.5), ("alarm", 0.25), ("cancel", 0.25)]
    assert [t.intent for t in top_k(np.array([0.1, 0.2, 0.7]), LABELS, 1)] == ["cancel"]


def test_windows_are_batched_and_streams_are_kept_apart() -> None:
    items: list[Any] = []
    # Two streams interleaved, same utterance id: their evidence must not mix.
    for k_a, k_b in [(0, 2), (0, 2), (0, 2)]:
        items.append(WindowItem("a", 1, 0, _window(k_a)))
        items.append(WindowItem("b", 1, 0, _window(k_b)))
    items.append(EndItem("a", 1, 0, 16000, 100.0, "silence", 3))
    items.append(EndItem("b", 1, 0, 16000, 100.0, "silence", 3))
    events, backend, worker = _run(items, verdict="mean", threshold=0.5, max_batch_windows=4)
    assert backend.batch_sizes == [4, 2]
    assert [(e["stream"], e["intent"], e["windows"]) for e in events] == [
        ("a", "alarm", 3), ("b", "cancel", 3)]
    assert worker.stats()["windows_classified"] == 6


def test_discarded_utterance_emits_nothing_and_events_keep_order() -> None:
    items: list[Any] = [
        EventItem(SpeechStartEvent(0, "default", 0.5, TS)),
        WindowItem("default", 0, 0, _window(2)),
        DiscardItem("default", 0),
        EventItem(SpeechStartEvent(1, "default", 3.0, TS)),
        *_utterance(1, [2]),
    ]
    events, _, worker = _run(items, verdict="mean")
    assert [(e["type"], e["utterance_id"]) for e in events] == [
        ("speech_start", 0), ("speech_start", 1), ("intent", 1)]
    stats = worker.stats()
    assert stats["events"] == {"intent": 1, "no_match": 0, "speech_start": 2, "speech_end": 0,
                               "window": 0, "stats": 0}
    assert stats["latency_ms_median"] == 250.0


def test_bad_backend_shape_is_an_error() -> None:
    class Broken(FakeBackend):
        def classify_windows(self, windows: np.ndarray) -> np.ndarray:
            return np.zeros((len(windows), 2))

    q: queue.Queue[Any] = queue.Queue()
    q.put(WindowItem("default", 0, 0, _window(0)))
    with pytest.raises(RuntimeError, match="shape"):
        Worker(Broken(), WorkerSettings(), Router([ListSink()]), q)._handle([q.get()])


def test_rejection_class_winning_is_no_match_at_any_threshold() -> None:
    class RejectingBackend(FakeBackend):
        labels = ("alarm", "balance", REJECT_LABEL)

    sink = ListSink()
    q: queue.Queue[Any] = queue.Queue()
    for it in [*_utterance(0, [2]), *_utterance(1, [1]), STOP]:
        q.put(it)
    Worker(RejectingBackend(), WorkerSettings(verdict="mean", threshold=0.0), Router([sink]), q,
           model_name="tiny", clock=lambda: 100.25, wall_clock=lambda: TS).run()
    rejected, accepted = (json.loads(x) for x in sink.lines)
    assert (rejected["type"], rejected["intent"], rejected["score"]) == ("no_match", None, 0.75)
    assert rejected["top"][0] == {"intent": REJECT_LABEL, "score": 0.75}
    assert (accepted["type"], accepted["intent"]) == ("intent", "balance")


@pytest.mark.parametrize("verdict", ["mean", "max"])
def test_window_verdict_with_a_rejection_class_warns(verdict: str, tmp_path: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from intentd.daemon.config import load_config
    from intentd.daemon.engine.supervisor import Supervisor

    class RejectingBackend(FakeBackend):
        labels = ("alarm", "balance", REJECT_LABEL)

    cfg = load_config(None, {"model.path": str(tmp_path), "model.verdict": verdict})
    caplog.set_level("WARNING", logger="intentd.daemon.engine.supervisor")
    Supervisor(cfg, load_backend=lambda m: RejectingBackend()).load_model()
    assert f"model.verdict '{verdict}' with a model that has the rejection class" in caplog.text
    caplog.clear()
    Supervisor(cfg, load_backend=lambda m: FakeBackend()).load_model()
    assert "rejection class" not in caplog.text


def test_utterance_verdict_classifies_no_window_unless_window_events() -> None:
    items: list[Any] = [AudioItem("s", 0, np.zeros(100, np.float32)),
                        WindowItem("s", 0, 0, _window(1)),
                        EndItem("s", 0, 0, 16000, 100.0, "silence", 1)]
    events, backend, worker = _run(items, verdict="utterance", window_events=True)
    assert backend.batch_sizes == [1]
    assert [e["type"] for e in events] == ["window", "intent"]
    assert to_json_line_of(events[0]) == (
        '{"v": 1, "type": "window", "utterance_id": 0, "stream": "s", "start_s": 0.0, '
        '"end_s": 1.0, "top": [{"intent": "balance", "score": 0.625}, {"intent": "alarm", '
        '"score": 0.25}, {"intent": "cancel", "score": 0.125}], '
        '"ts": "2024-05-01T12:00:00.000Z"}')
    assert worker.stats()["events"]["window"] == 1
    assert not WorkerSettings(verdict="utterance").needs_windows
    assert WorkerSettings(verdict="utterance", window_events=True).needs_windows
    assert WorkerSettings(verdict="max").needs_windows


def to_json_line_of(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


def test_verdicts_ending_together_are_scored_in_one_call_per_stream_order_kept() -> None:
    backend = BatchingBackend()
    sink = ListSink()
    q: queue.Queue[Any] = queue.Queue()
    for it in [AudioItem("a", 0, np.zeros(10, np.float32)),
               AudioItem("b", 0, np.zeros(10, np.float32)),
               EventItem(SpeechStartEvent(1, "a", 2.0, TS)),
               EndItem("a", 0, 0, 16000, 100.0, "silence"),
               EndItem("b", 0, 0, 16000, 100.0, "silence"),
               AudioItem("a", 1, np.zeros(10, np.float32)),
               EndItem("a", 1, 32000, 48000, 100.0, "silence"), STOP]:
        q.put(it)
    worker = Worker(backend, WorkerSettings(), Router([sink]), q, clock=lambda: 100.25,
                    wall_clock=lambda: TS)
    worker.run()
    assert backend.verdict_batches == [3]
    assert worker.stats()["verdict_batches"] == 1
    got = [json.loads(x) for x in sink.lines]
    assert [(e["stream"], e["type"], e["utterance_id"]) for e in got] == [
        ("a", "speech_start", 1), ("a", "intent", 0), ("b", "intent", 0), ("a", "intent", 1)]


def test_swap_applies_to_utterances_that_start_after_it() -> None:
    old, new = FakeBackend("old", (0.75, 0.125, 0.125)), FakeBackend("new", (0.125, 0.75, 0.125))
    sink = ListSink()
    q: queue.Queue[Any] = queue.Queue()
    worker = Worker(old, WorkerSettings(), Router([sink]), q, clock=lambda: 100.25,
                    wall_clock=lambda: TS)
    worker._handle([AudioItem("s", 0, np.zeros(10, np.float32))])  # utterance 0 begins
    done = worker.swap(new, WorkerSettings(top_k=1), model_name="new")
    assert not done.is_set()
    for it in [AudioItem("s", 0, np.zeros(10, np.float32)),
               EndItem("s", 0, 0, 16000, 100.0, "silence"),
               AudioItem("s", 1, np.zeros(10, np.float32)),
               EndItem("s", 1, 16000, 32000, 100.0, "silence"), STOP]:
        q.put(it)
    worker.run()
    assert done.is_set()
    first, second = (json.loads(x) for x in sink.lines)
    # Utterance 0 began under the old model: judged by it, under the new settings.
    assert (first["model"], first["intent"], len(first["top"])) == ("old", "alarm", 1)
    assert (second["model"], second["intent"], len(second["top"])) == ("new", "balance", 1)
    assert (old.scorers, new.scorers) == (1, 1)


def test_stream_end_forgets_its_utterances_and_reports() -> None:
    ended: list[StreamEnded] = []
    q: queue.Queue[Any] = queue.Queue()
    for it in [AudioItem("a", 0, np.zeros(10, np.float32)),
               AudioItem("b", 0, np.zeros(10, np.float32)),
               StreamEnded("a", "cannot read"),
               EndItem("b", 0, 0, 16000, 100.0, "silence"), STOP]:
        q.put(it)
    sink = ListSink()
    worker = Worker(FakeBackend(), WorkerSettings(), Router([sink]), q,
                    on_stream_ended=ended.append)
    worker.run()
    assert ended == [StreamEnded("a", "cannot read")]
    assert [json.loads(x)["stream"] for x in sink.lines] == ["b"]


class WordsScorer:
    """Scores by the 'words' the audio holds: runs of one sample value (0.25 = the alarm
    command, 0.5 = the cancel command); exact binary fractions."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        self.chunks.append(np.asarray(samples))

    def result(self) -> np.ndarray:
        audio = np.concatenate(self.chunks)
        alarm, cancel = bool(np.any(audio == 0.25)), bool(np.any(audio == 0.5))
        if alarm and cancel:
            return np.array([0.625, 0.125, 0.25, 0.0])
        if alarm:
            return np.array([0.96875, 0.015625, 0.0, 0.015625])
        return np.array([0.015625, 0.0, 0.96875, 0.015625])


class WordsBackend(FakeBackend):
    labels = (*LABELS, REJECT_LABEL)

    def utterance_scorer(self) -> WordsScorer:  # type: ignore[override]
        self.scorers += 1
        return WordsScorer()


def test_model_segmentation_answers_early_and_gives_the_next_command_its_own_event() -> None:
    from intentd.daemon.engine.items import PauseItem, ResumeItem, StartItem
    from intentd.daemon.segmentation.settings import SegmentationConfig

    def run(mode: str, early_after_ms: int = 400) -> list[dict[str, Any]]:
        silence = np.zeros(4800, np.float32)  # 300 ms
        items = [
            StartItem("s", 0, 0, 4800),
            AudioItem("s", 0, np.concatenate([silence, np.full(16000, 0.25, np.float32)]), 0),
            PauseItem("s", 0, 20800, 300, 25600, silence, 100.0),
            PauseItem("s", 0, 20800, 400, 27200, silence, 100.125),
            ResumeItem("s", 0, 32000, 7, silence),
            AudioItem("s", 0, np.full(16000, 0.5, np.float32), 32000),
            AudioItem("s", 0, silence, 48000),
            EndItem("s", 0, 4800, 48000, 100.0, "silence", 3, None, 52800, 68800),
        ]
        backend = WordsBackend()
        sink = ListSink()
        q: queue.Queue[Any] = queue.Queue()
        for it in [*items, STOP]:
            q.put(it)
        settings = WorkerSettings(segmentation=SegmentationConfig(
            mode=mode, early_after_ms=early_after_ms), min_speech_samples=4000)
        Worker(backend, settings, Router([sink]), q, model_name="tiny",
               clock=lambda: 100.25, wall_clock=lambda: TS).run()
        return [json.loads(x) for x in sink.lines]

    keys = ("type", "intent", "score", "utterance_id", "start_s", "end_s", "end", "decided_s",
            "windows", "latency_ms")
    assert [{k: e[k] for k in keys} for e in run("model")] == [
        {"type": "intent", "intent": "alarm", "score": 0.9688, "utterance_id": 0,
         "start_s": 0.3, "end_s": 1.3, "end": "early", "decided_s": 1.7, "windows": 0,
         "latency_ms": 125.0},
        {"type": "intent", "intent": "cancel", "score": 0.9688, "utterance_id": 7,
         "start_s": 2.0, "end_s": 3.0, "end": "silence", "decided_s": 4.3, "windows": 3,
         "latency_ms": 250.0},
    ]
    # silence alone: the same items are one utterance, one verdict on all of its audio
    assert [{k: e[k] for k in keys} for e in run("silence")] == [
        {"type": "intent", "intent": "alarm", "score": 0.625, "utterance_id": 0,
         "start_s": 0.3, "end_s": 3.0, "end": "silence", "decided_s": 4.3, "windows": 3,
         "latency_ms": 250.0}]
    # without early answers the pause is weighed once the next part has ended: a split
    got = run("model", early_after_ms=0)
    assert [(e["intent"], e["end"], e["utterance_id"], e["decided_s"]) for e in got] == [
        ("alarm", "split", 0, 4.3), ("cancel", "silence", 7, 4.3)]
