"""The engine and its supervisor with fake sources, a fake backend and a capturing sink:
many streams in one worker, start/ready, streams added and removed, a failing stream, a
model swap between utterances, stopping within 2 s."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from segmenter_helpers import harmonic

from intentd.daemon.config import Config, load_config
from intentd.daemon.engine.supervisor import Supervisor
from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.output.events import Event, IntentEvent

SR = 16000
BLOCK = 480  # 30 ms


def speech_then_silence(speech_s: float, silence_s: float, lead_s: float = 0.0) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead_s * SR), np.float32), harmonic(int(speech_s * SR)),
                           np.zeros(int(silence_s * SR), np.float32)])


def two_commands() -> np.ndarray:
    """0.5 s silence, two 1 s bursts 2 s apart (the hangover is 1.3 s): two utterances."""
    return np.concatenate([np.zeros(SR // 2, np.float32), speech_then_silence(1.0, 2.0),
                           speech_then_silence(1.0, 2.0)])


class ArraySource:
    """Hands out ``audio`` in 30 ms blocks as fast as asked; ``fail_at_s`` raises there."""

    def __init__(self, audio: np.ndarray, name: str = "array",
                 fail_at_s: float | None = None) -> None:
        self.name = name
        self.sample_rate_hz = SR
        self.channels = 1
        self._audio = audio
        self._pos = 0
        self._fail_at = None if fail_at_s is None else int(fail_at_s * SR)

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise DataError(f"cannot read audio file {self.name}: corrupt block")
        if self._pos >= self._audio.size:
            return None
        block = self._audio[self._pos : self._pos + BLOCK]
        self._pos += block.size
        return block.reshape(-1, 1)

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]:
        return {"blocks": self._pos // BLOCK, "samples": self._pos}


class FedSource(ArraySource):
    """A live source the test feeds: ``feed`` adds audio, ``close`` ends it."""

    def __init__(self, name: str = "live") -> None:
        super().__init__(np.zeros(0, np.float32), name)
        self._q: queue.Queue[np.ndarray | None] = queue.Queue()
        self._eof = False

    def feed(self, audio: np.ndarray) -> None:
        for i in range(0, audio.size, BLOCK):
            self._q.put(audio[i : i + BLOCK])

    def close(self) -> None:
        self._q.put(None)

    def read(self, timeout_s: float) -> np.ndarray | None:
        if self._eof:
            return None
        try:
            block = self._q.get(timeout=timeout_s)
        except queue.Empty:
            return np.zeros((0, 1), np.float32)
        if block is None:
            self._eof = True
            return None
        return block.reshape(-1, 1)


class Scorer:
    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs
        self.samples = 0

    def push(self, samples: np.ndarray) -> None:
        self.samples += samples.size

    def result(self) -> np.ndarray:
        return self.probs


class Backend:
    labels = ("on", "off")
    sample_rate_hz = SR

    def __init__(self, name: str = "fake", probs: tuple[float, float] = (0.75, 0.25)) -> None:
        self.name = name
        self.probs = np.array(probs)
        self.windows = 0

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        self.windows += len(windows)
        return np.tile(self.probs, (len(windows), 1))

    def utterance_scorer(self) -> Scorer:
        return Scorer(self.probs)


class CaptureSink:
    name = "capture"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def start(self) -> None: ...

    def emit(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {"sink": self.name}

    def verdicts(self, stream: str | None = None) -> list[IntentEvent]:
        with self.lock:
            return [e for e in self.events if isinstance(e, IntentEvent)
                    and (stream is None or e.stream == stream)]


def make(cfg: Config, sources: dict[str, ArraySource],
         backends: list[Backend] | None = None) -> tuple[Supervisor, CaptureSink]:
    sink = CaptureSink()
    pool = list(backends or [Backend()])

    def load(model: Any) -> Backend:
        return pool.pop(0)

    sup = Supervisor(cfg, load_backend=load,  # type: ignore[arg-type]
                     source_opener=lambda inp: sources[inp.name],
                     sink_opener=lambda targets, out, stdout=None, **k: [sink])
    return sup, sink


def cfg_for(*names: str, **overrides: Any) -> Config:
    return load_config(None, {"inputs": [f"{n}=mic" for n in names], **overrides})


def wait_until(cond: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_streams_share_one_worker_and_keep_their_events_apart() -> None:
    names = ("a", "b", "c")
    sup, sink = make(cfg_for(*names), {n: ArraySource(two_commands(), n) for n in names})
    ready: list[bool] = []
    sup.on_ready(lambda: ready.append(sup.ready.is_set()))
    assert sup.run() == 0
    assert ready == [True]
    for n in names:
        got = sink.verdicts(n)
        assert [(e.utterance_id, e.intent) for e in got] == [(0, "on"), (1, "on")]
        assert 0.4 < got[0].start_s < 0.6 and 3.4 < got[1].start_s < 3.6
    st = sup.status()
    assert st["ready"] and st["model_loaded"] and st["inputs_open"] and st["sinks_bound"]
    assert {n: s["state"] for n, s in st["streams"].items()} == dict.fromkeys(names, "ended")
    assert st["worker"]["utterances"] == 6


def test_a_failing_stream_ends_alone_with_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    sources = {"good": ArraySource(two_commands(), "good"),
               "bad": ArraySource(two_commands(), "bad", fail_at_s=1.0)}
    sup, sink = make(cfg_for("good", "bad"), sources)
    assert sup.run() == 2  # bad input: the exit code says so, after the others completed
    assert len(sink.verdicts("good")) == 2
    # What the failing stream heard before the failure still gets its verdict.
    assert [e.utterance_id for e in sink.verdicts("bad")] == [0]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["stream bad: cannot read audio file bad: corrupt block; this stream ends"]
    assert sup.status()["streams"]["bad"]["state"] == "failed"


def test_an_input_that_cannot_open_is_skipped_when_there_are_others(
        caplog: pytest.LogCaptureFixture) -> None:
    def opener(inp: Any) -> ArraySource:
        if inp.name == "missing":
            raise DataError("audio file not found: missing.wav")
        return ArraySource(two_commands(), inp.name)

    sink = CaptureSink()
    sup = Supervisor(cfg_for("ok", "missing"), load_backend=lambda m: Backend(),  # type: ignore[arg-type]
                     source_opener=opener, sink_opener=lambda *a, **k: [sink])
    assert sup.run() == 2
    assert len(sink.verdicts("ok")) == 2
    assert "stream missing: audio file not found: missing.wav" in caplog.text
    # A single input that cannot open fails the start, as a typo should.
    alone = Supervisor(cfg_for("missing"), source_opener=opener)
    with pytest.raises(DataError, match="not found"):
        alone.open_inputs()


def test_streams_added_and_removed_at_run_time_and_stop_within_2_s() -> None:
    live = FedSource("live")
    sup, sink = make(cfg_for("live"), {"live": live})
    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    assert sup.engine is not None
    sup.add_input("late", ArraySource(two_commands(), "late"))
    wait_until(lambda: "late" in sup.engine.ended())  # type: ignore[union-attr]
    assert len(sink.verdicts("late")) == 2
    live.feed(speech_then_silence(1.0, 2.0, lead_s=0.5))
    wait_until(lambda: len(sink.verdicts("live")) == 1)
    health = sup.health()
    assert set(health) == {"worker", "stream:live"} and max(health.values()) < 2.0
    sup.engine.remove_stream("live")
    # Every input has ended: the supervisor shuts down by itself, as at the end of files.
    runner.join(5)
    assert not runner.is_alive() and runner.code == 0  # type: ignore[attr-defined]
    assert set(sup.engine.ended()) == {"live", "late"}


def test_stop_finishes_the_open_utterance_within_2_s() -> None:
    live = FedSource("live")
    sup, sink = make(cfg_for("live"), {"live": live})
    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    live.feed(np.concatenate([np.zeros(SR // 2, np.float32), harmonic(SR)]))  # still speaking
    wait_until(lambda: sup.engine.worker.stats()["open_utterances"] == 1)  # type: ignore[union-attr]
    t0 = time.monotonic()
    sup.request_stop()
    runner.join(5)
    assert time.monotonic() - t0 < 2.0 and runner.code == 0  # type: ignore[attr-defined]
    assert [e.utterance_id for e in sink.verdicts("live")] == [0]


def test_model_swap_between_utterances_keeps_inputs_and_outputs() -> None:
    live = FedSource("live")
    cfg = cfg_for("live")
    old, new = Backend("old", (0.75, 0.25)), Backend("new", (0.25, 0.75))
    sup, sink = make(cfg, {"live": live}, [old, new])
    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    live.feed(np.concatenate([np.zeros(SR // 2, np.float32), harmonic(SR // 2)]))
    wait_until(lambda: sup.engine.worker.stats()["open_utterances"] == 1)  # type: ignore[union-attr]
    done = sup.reload(replace(cfg, model=replace(cfg.model, threshold=0.7)))
    live.feed(np.concatenate([harmonic(SR // 2), np.zeros(2 * SR, np.float32),
                              speech_then_silence(1.0, 2.0)]))
    wait_until(lambda: len(sink.verdicts()) == 2)
    assert done.is_set()
    first, second = sink.verdicts()
    # The utterance that began before the swap is judged by the old model as a whole.
    assert (first.model, first.intent, first.type) == ("old", "on", "intent")
    assert (second.model, second.intent) == ("new", "off")
    assert sup.cfg.model.threshold == 0.7
    live.close()
    runner.join(5)
    assert runner.code == 0  # type: ignore[attr-defined]


def test_reload_with_a_broken_model_changes_nothing() -> None:
    live = FedSource("live")
    sup, sink = make(cfg_for("live"), {"live": live})

    def broken(model: Any) -> Backend:
        raise DataError(f"{model.path} has no config.json, so it is not a model")

    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    sup._load_backend = broken  # type: ignore[assignment]
    with pytest.raises(DataError, match="not a model"):
        sup.reload(sup.cfg)
    live.feed(speech_then_silence(1.0, 2.0, lead_s=0.5))
    wait_until(lambda: len(sink.verdicts()) == 1)
    assert sink.verdicts()[0].model == "fake"
    live.close()
    runner.join(5)
    assert runner.code == 0  # type: ignore[attr-defined]


def test_windows_reach_the_model_only_when_something_uses_them() -> None:
    for overrides, expect_windows in (({}, False), ({"output.window_events": True}, True),
                                      ({"model.verdict": "mean"}, True)):
        backend = Backend()
        sup, sink = make(cfg_for("a", **overrides), {"a": ArraySource(two_commands(), "a")},
                         [backend])
        assert sup.run() == 0
        assert (backend.windows > 0) == expect_windows, overrides
        assert [e.windows for e in sink.verdicts()] == [3, 3]  # windows cut, either way


def test_reload_takes_new_vad_settings_between_utterances() -> None:
    live = FedSource("live")
    cfg = cfg_for("live", **{"segmentation.mode": "silence"})  # the hangover alone
    sup, sink = make(cfg, {"live": live}, [Backend(), Backend()])
    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)
    stage = sup.engine.streams()["live"]  # type: ignore[union-attr]
    before = stage.segmenter
    sup.reload(replace(cfg, model=replace(cfg.model, threshold=0.6)), reload_model=False)
    two_bursts = np.concatenate([np.zeros(SR // 2, np.float32), harmonic(SR),
                                 np.zeros(SR, np.float32), speech_then_silence(1.0, 2.0)])
    live.feed(two_bursts)  # 1 s apart: one utterance under the 1.3 s hangover
    wait_until(lambda: len(sink.verdicts()) == 1)
    assert stage.segmenter is before  # same VAD settings: the segmenter (noise floor) stays
    sup.reload(replace(cfg, vad=replace(cfg.vad, min_silence_ms=500)), reload_model=False)
    live.feed(two_bursts)
    wait_until(lambda: len(sink.verdicts()) == 3)  # now two
    assert stage.segmenter is not before
    ids = [e.utterance_id for e in sink.verdicts()]
    assert ids == [0, 1, 2]  # utterance ids go on across the new segmenter
    starts = [e.start_s for e in sink.verdicts()]
    assert starts == sorted(starts) and starts[1] > 5.0  # stream time goes on too
    live.close()
    runner.join(5)
    assert runner.code == 0  # type: ignore[attr-defined]


def test_nan_and_inf_samples_are_read_as_silence(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clean = two_commands()
    dirty = clean.copy()
    dirty[100] = np.nan  # before the first command: would poison the noise floor
    dirty[SR // 2 + 3000] = np.inf  # inside speech
    dirty[SR // 2 + 3001] = -np.inf
    sources = {"clean": ArraySource(clean, "clean"), "dirty": ArraySource(dirty, "dirty")}
    sup, sink = make(cfg_for("clean", "dirty"), sources)
    assert sup.run() == 0
    got = [(e.utterance_id, e.intent, round(e.start_s, 3), round(e.end_s, 3))
           for e in sink.verdicts("dirty")]
    assert got == [(e.utterance_id, e.intent, round(e.start_s, 3), round(e.end_s, 3))
                   for e in sink.verdicts("clean")]
    assert len(got) == 2
    assert sup.status()["streams"]["dirty"]["nonfinite_samples"] == 3
    warnings = [r.getMessage() for r in caplog.records if "NaN" in r.getMessage()]
    assert warnings == ["stream dirty: the audio holds NaN or infinite samples; they are read "
                        "as silence (counted in the stream's nonfinite_samples)"]


def test_stats_events_come_every_interval_in_order_with_the_others() -> None:
    live = FedSource("live")
    sup, sink = make(cfg_for("live", **{"output.stats_interval_s": 0.1}), {"live": live})
    runner = threading.Thread(target=sup.run)
    runner.start()
    wait_until(lambda: sup.ready.is_set())
    live.feed(two_commands())
    wait_until(lambda: len(sink.verdicts("live")) == 2)
    wait_until(lambda: sum(getattr(e, "TYPE", "") == "stats" for e in sink.events) >= 3)
    live.close()
    runner.join(timeout=10)
    stats = [e for e in sink.events if getattr(e, "TYPE", "") == "stats"]
    last = stats[-1]
    assert [f.name for f in last.streams] == ["live"]
    assert last.streams[0].audio_s > 5.0 and last.uptime_s > 0 and last.rss_mb > 10
    assert [s.uptime_s for s in stats] == sorted(s.uptime_s for s in stats)
    after = [e for e in stats if e.utterances == 2]
    assert after and dict(after[-1].events)["intent"] == 2


def test_hooks_are_checked_against_the_model_at_start_and_at_reload() -> None:
    cfg = replace(cfg_for("live"), hooks=(("on", ("/bin/true",)),))
    sup, _ = make(replace(cfg, hooks=(("of", ("/bin/true",)),)), {"live": FedSource("live")})
    with pytest.raises(ConfigError, match=r"hooks.of: the model has no intent 'of'; did you "
                                          r"mean off"):
        sup.run()
    live = FedSource("live")
    sup, _ = make(cfg, {"live": live}, [Backend(), Backend()])
    runner = threading.Thread(target=lambda: setattr(runner, "code", sup.run()))
    runner.start()
    assert sup.ready.wait(10)

    class Other(Backend):
        labels = ("up", "down")

    sup._load_backend = lambda m: Other()  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"hooks.on: the model has no intent 'on'"):
        sup.reload(sup.cfg)
    assert sup.backend is not None and sup.backend.labels == ("on", "off")
    live.close()
    runner.join(5)
    assert runner.code == 0  # type: ignore[attr-defined]


def test_the_model_segments_only_with_the_utterance_verdict_and_a_rejection_class() -> None:
    from intentd.daemon.engine.engine import engine_settings

    class WithReject(Backend):
        labels = (*Backend.labels, "_none")

    def marks(backend: Any, **overrides: Any) -> tuple[tuple[int, ...], str]:
        s = engine_settings(cfg_for("a", **overrides), backend)
        return s.stream.pause_marks_ms, s.worker.segmentation.mode

    assert marks(WithReject()) == ((300, 400), "model")
    assert marks(WithReject(), **{"segmentation.early_after_ms": 0}) == ((300,), "model")
    assert marks(WithReject(), **{"model.verdict": "mean"}) == ((), "silence")
    assert marks(WithReject(), **{"segmentation.mode": "silence"}) == ((), "silence")
    assert marks(Backend()) == ((), "silence")  # it cannot say "no command (yet)"
