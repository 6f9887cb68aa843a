"""The supervisor: the one owner of the daemon's lifecycle.

Start-up, in the order that makes a typo fail first and fast::

    open_inputs()   every configured input (a path typo fails before the model loads)
    load_model()    the backend (seconds)
    open_outputs()  bind the sinks
    start()         engine + worker + one stream per input; then ready

Readiness (:attr:`Supervisor.ready`, :meth:`Supervisor.status`) means all three: model
loaded, inputs open, sinks bound. :meth:`Supervisor.health` gives each stage's seconds since
its last progress; under systemd (:mod:`.notify`) they gate the watchdog pings, and readiness,
live status and stopping are reported. :meth:`Supervisor.reload` swaps the model and settings
between utterances without closing inputs or socket clients. :meth:`Supervisor.request_stop`
only sets a flag, so a signal handler may call it.

Failures: with several inputs, one that cannot be opened or that fails while running ends
alone (one log line) and the others go on; the exit code then says so (2 for bad input,
1 for a crash). With a single input, an input that cannot be opened is raised at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from intentd.daemon.audio.sources import AudioSource, open_source
from intentd.daemon.config import Config, InputConfig, ModelConfig
from intentd.daemon.engine.engine import DRAIN_GRACE_S, Engine, engine_settings
from intentd.daemon.engine.latency import BUCKETS_MS as LATENCY_BUCKETS_MS
from intentd.daemon.engine.notify import Notifier
from intentd.daemon.engine.summary import log_summary
from intentd.daemon.errors import IntentdError
from intentd.daemon.model.backend import ModelBackend
from intentd.daemon.output.events import REJECT_LABEL, StatsEvent, StreamFigures
from intentd.daemon.output.metrics import Figures, MetricsServer
from intentd.daemon.output.recordings import UtteranceRecorder
from intentd.daemon.output.router import Router
from intentd.daemon.output.sinks import Sink, open_sinks

if TYPE_CHECKING:
    from intentd.daemon.output.events import CallInfo
    from intentd.daemon.telephony.server import TelephonyServer
    from intentd.daemon.wyoming.server import WyomingServer

log = logging.getLogger(__name__)

STALL_S = 30.0  # a stage without progress for this long is stalled: no watchdog pings
STATUS_EVERY_S = 5.0

BackendLoader = Callable[[ModelConfig], ModelBackend]  # model.path, threads, backend
SourceOpener = Callable[[InputConfig], AudioSource]
SinkOpener = Callable[..., list[Sink]]


def _rss_mb() -> float:
    """Resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _default_loader(model: ModelConfig) -> ModelBackend:
    from intentd.daemon.model.loader import load_backend

    return load_backend(model.path, model.threads, model.backend)


class Supervisor:
    def __init__(self, cfg: Config, *, load_backend: BackendLoader = _default_loader,
                 source_opener: SourceOpener = open_source,
                 sink_opener: SinkOpener = open_sinks, stdout: TextIO | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self._next_ping = self._next_status = self._next_stats = 0.0
        self._started = time.monotonic()
        self.metrics: MetricsServer | None = None
        self.recorder: UtteranceRecorder | None = None
        self.model_load_s: float | None = None
        self._stalled: tuple[str, ...] = ()
        self._load_backend = load_backend
        self._open_source = source_opener
        self._open_sinks = sink_opener
        self._stdout = stdout
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.inputs_open = False
        self.model_loaded = False
        self.sinks_bound = False
        self.sources: dict[str, AudioSource] = {}
        self.failed: dict[str, BaseException] = {}  # input -> why it failed
        self.backend: ModelBackend | None = None
        self.router: Router | None = None
        self.engine: Engine | None = None
        self.wyoming: WyomingServer | None = None
        self.telephony: TelephonyServer | None = None  # --listen
        self._ready_listeners: list[Callable[[], None]] = []

    # --- start-up -------------------------------------------------------------------

    def open_inputs(self) -> None:
        """Open every input (a device is looked up, a file's header read); capture starts
        in :meth:`start`, once the model is loaded. A failure: module docstring."""
        for inp in self.cfg.inputs:
            self._try(inp.name, lambda inp=inp: self.sources.__setitem__(
                inp.name, self._open_source(inp)))
        if not self.sources and self.cfg.inputs:
            raise next(iter(self.failed.values()))
        self.inputs_open = True

    def _try(self, name: str, step: Callable[[], object]) -> bool:
        try:
            step()
        except IntentdError as exc:
            if len(self.cfg.inputs) == 1:
                raise
            log.error("stream %s: %s; this stream ends, the others go on", name, exc)
            self.failed[name] = exc
            self.sources.pop(name, None)
            return False
        return True

    def load_model(self) -> ModelBackend:
        t0 = time.monotonic()
        self.backend = self._load_backend(self.cfg.model)
        self.model_load_s = time.monotonic() - t0
        if self.cfg.model.verdict != "utterance" and REJECT_LABEL in self.backend.labels:
            # Measured on 100 real coffee orders: every utterance came out no_match.
            log.warning("model.verdict %r with a model that has the rejection class %r: a 1 s "
                        "window rarely holds a whole command, so %r wins most windows; use "
                        "model.verdict: utterance", self.cfg.model.verdict, REJECT_LABEL,
                        REJECT_LABEL)
        self.model_loaded = True
        return self.backend

    def open_outputs(self) -> None:
        if self.cfg.hooks and self.backend is not None:
            from intentd.daemon.output.hooks import check_intents

            check_intents(self.cfg.hooks, self.backend.labels)
        self.router = Router(self._open_sinks(self.cfg.output.parsed_targets, self.cfg.output,
                                              stdout=self._stdout, mqtt=self.cfg.mqtt,
                                              hooks=self.cfg.hooks))
        out = self.cfg.output
        try:
            if out.metrics:
                self.metrics = MetricsServer(out.metrics, self.metrics_figures)
                self.metrics.start()
            if out.save_utterances_dir:
                assert self.backend is not None, "load_model() first"
                self.recorder = UtteranceRecorder(
                    out.save_utterances_dir, out.save_utterances_max_files,
                    int(out.save_utterances_max_mb * 2**20), self.backend.sample_rate_hz)
                self.recorder.start()
            if self.cfg.wyoming.uri:
                from intentd.daemon.wyoming.server import WyomingServer

                self.wyoming = WyomingServer.from_config(self.cfg, self)
                self.wyoming.start()
                self.router.sinks.append(self.wyoming)  # its streams' events go back to it
            if self.cfg.telephony.listen:
                from intentd.daemon.telephony.server import TelephonyServer

                self.telephony = TelephonyServer.from_config(self.cfg, self)
                self.telephony.start()
        except BaseException:
            self.router.close()
            if self.metrics is not None:
                self.metrics.close()
            raise
        self.sinks_bound = True

    def on_ready(self, listener: Callable[[], None]) -> None:
        self._ready_listeners.append(listener)

    def start(self) -> None:
        if not self.inputs_open:
            self.open_inputs()
        if not self.model_loaded:
            self.load_model()
        if not self.sinks_bound:
            self.open_outputs()
        assert self.backend is not None and self.router is not None
        self.engine = Engine(self.backend, engine_settings(self.cfg, self.backend),
                             self.router, model_name=self.backend.name, recorder=self.recorder)
        self.engine.start()
        for name, source in list(self.sources.items()):
            if self._try(name, source.start):
                self.engine.add_stream(name, source)
        for server in self.servers:
            self.engine.on_stream_ended(server.stream_ended)
            server.serve()
        log.info("ready: %d stream(s) -> %s; model %s (%s verdict)", len(self.sources),
                 ", ".join(s.name for s in self.router.sinks), self.backend.name,
                 self.cfg.model.verdict)
        self.ready.set()
        self.notifier.ready(self.status_line())
        for listener in self._ready_listeners:
            listener()

    # --- running --------------------------------------------------------------------

    def request_stop(self) -> None:
        """Signal-handler safe: only sets a flag."""
        self._stop.set()

    def run(self) -> int:
        """Start (what is not yet started), run until every input ended (with a server
        on, Wyoming or --listen: until a stop is requested), shut down; the exit code."""
        try:
            if not self.ready.is_set():
                self.start()
            assert self.engine is not None
            while not self._stop.is_set():
                if self.servers:
                    self._stop.wait(0.2)  # their clients come and go: no end of input
                elif self.engine.wait_streams(timeout_s=0.2, stop=self._stop):
                    break
                if not self.engine.worker_alive:
                    break
                if self.router is not None and self.router.all_dead():
                    log.info("no output is left to write events to: stopping")
                    self._stop.set()
                self._tick()
            self.notifier.stopping()
            if self._stop.is_set():
                log.info("stop requested: finishing the current utterances")
            for server in self.servers:
                server.close()  # clients go first: their streams end with them
            self.engine.stop(DRAIN_GRACE_S)
        finally:
            if self.router is not None:
                self.router.close()  # never leave a socket file behind
            if self.metrics is not None:
                self.metrics.close()
            if self.recorder is not None:
                self.recorder.close()
        log_summary(self.engine, self.router)
        return self.exit_code()

    def _tick(self) -> None:
        """Watchdog pings while every stage makes progress (a stalled one stops them, so
        systemd restarts the service), and the live status line."""
        now = time.monotonic()
        if self.notifier.watchdog_s and now >= self._next_ping:
            self._next_ping = now + self.notifier.watchdog_s / 3
            stalled = tuple(sorted(k for k, age in self.health().items() if age > STALL_S))
            if stalled != self._stalled and stalled:
                log.error("watchdog: %s made no progress for %.0f s; no more pings to systemd",
                          ", ".join(stalled), STALL_S)
            self._stalled = stalled
            if not stalled:
                self.notifier.watchdog()
        every = self.cfg.output.stats_interval_s
        if every > 0 and self.engine is not None and now >= self._next_stats:
            if self._next_stats and not self.engine.post(self.stats_event()):
                log.debug("stats event skipped: the work queue is full")
            self._next_stats = now + every
        if self.notifier.enabled and now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            self.notifier.status(self.status_line())

    def _stream_figures(self) -> tuple[StreamFigures, ...]:
        """Each stream's figures, as stats events, the metrics and the status line use them."""
        if self.engine is None:
            return ()
        figures = []
        for name, stage in self.engine.streams().items():
            st, src = stage.stats(), stage.source.stats()
            figures.append(StreamFigures(
                name, st["state"], st["samples_in"] / max(1, stage.source.sample_rate_hz),
                st["utterances"], st["discarded"], src.get("dropped_blocks", 0),
                src.get("overflows", 0)))
        return tuple(figures)

    def stats_event(self) -> StatsEvent:
        assert self.engine is not None
        wk = self.engine.worker.stats()
        return StatsEvent(time.monotonic() - self._started, self._stream_figures(),
                          wk["utterances"],
                          tuple(sorted(wk["events"].items())), wk["windows_classified"],
                          wk["latency_ms_median"], self.engine.queue_items(), _rss_mb(),
                          time.time())

    def metrics_figures(self) -> Figures:
        """What the Prometheus endpoint serves (read at scrape time, any thread)."""
        streams = self._stream_figures()
        latency: tuple[list[int], float] = ([0] * (len(LATENCY_BUCKETS_MS) + 1), 0.0)
        events: tuple[tuple[str, int], ...] = ()
        queue_items = 0
        audio_s = sum(s.audio_s for s in streams)
        if self.engine is not None:
            worker = self.engine.worker
            latency = (list(worker.latencies.counts), worker.latencies.sum_ms)
            events = tuple(sorted(worker.stats()["events"].items()))
            queue_items = self.engine.queue_items()
        wall = time.monotonic() - self._started
        return Figures(self.ready.is_set(), streams, events, queue_items,
                       LATENCY_BUCKETS_MS, latency[0], latency[1],
                       audio_s / wall if wall > 0 and streams else None, self.model_load_s,
                       _rss_mb() * 2**20)

    def status_line(self) -> str:
        """The live figures for systemd's STATUS=."""
        if self.engine is None:
            return "starting"
        streams = self._stream_figures()
        wk = self.engine.worker.stats()
        drops = sum(s.dropped_blocks for s in streams)
        running = sum(s.state == "running" for s in streams)
        return (f"{running} of {len(streams)} stream(s) running; {wk['utterances']} utterances, "
                f"{sum(wk['events'].values())} events, {drops} dropped blocks")

    def exit_code(self) -> int:
        assert self.engine is not None
        if self.engine.worker_error is not None:
            return 1
        if self.router is not None and self.router.errors():
            return 1  # events could not be written: not a success
        failures = list(self.failed.values())
        failures += [s.failure for s in self.engine.streams().values() if s.failure]
        if any(not isinstance(f, IntentdError) for f in failures):
            return 1
        return 2 if failures else 0

    # --- control --------------------------------------------------------------------

    def reload(self, cfg: Config, reload_model: bool = True) -> threading.Event:
        """Swap in ``cfg`` (and, when asked, the model it names) between utterances.

        Raises (IntentdError) without changing anything when the new model cannot be
        loaded or does not fit; inputs and outputs stay as they are."""
        assert self.engine is not None and self.backend is not None
        backend = self.backend
        if reload_model:
            backend = self._load_backend(cfg.model)
        if self.cfg.hooks:  # the running hooks must still name intents the model has
            from intentd.daemon.output.hooks import check_intents

            check_intents(self.cfg.hooks, backend.labels)
        if cfg.inputs != self.cfg.inputs:
            log.warning("reload: inputs are kept as they are; restart intentd to change them")
        if (cfg.output.targets, cfg.mqtt, cfg.hooks) != (self.cfg.output.targets, self.cfg.mqtt,
                                                         self.cfg.hooks):
            log.warning("reload: outputs (targets, mqtt, hooks) are kept as they are; restart "
                        "intentd to change them")
        if cfg.wyoming != self.cfg.wyoming or cfg.telephony != self.cfg.telephony:
            log.warning("reload: the servers (wyoming, telephony) are kept as they are; restart "
                        "intentd to change them")
        done = self.engine.swap(backend, engine_settings(cfg, backend),
                                model_name=backend.name)
        self.backend = backend
        self.cfg = replace(cfg, inputs=self.cfg.inputs, wyoming=self.cfg.wyoming, output=replace(
            cfg.output, targets=self.cfg.output.targets), telephony=self.cfg.telephony,
            mqtt=self.cfg.mqtt, hooks=self.cfg.hooks)
        return done

    def add_input(self, name: str, source: AudioSource, call: CallInfo | None = None) -> None:
        """A stream that arrives while running (a network connection, a hot-plugged mic)."""
        assert self.engine is not None
        source.start()
        self.engine.add_stream(name, source, call)  # a name in use raises: keep its source
        self.sources[name] = source

    @property
    def servers(self) -> list[WyomingServer | TelephonyServer]:
        """The network servers, whose clients are streams: they start with the engine."""
        return [s for s in (self.wyoming, self.telephony) if s is not None]

    def forget_input(self, name: str) -> None:
        """Drop an ended stream that arrived while running (its figures go with it)."""
        self.sources.pop(name, None)
        if self.engine is not None:
            self.engine.forget_stream(name)

    # --- figures --------------------------------------------------------------------

    def health(self) -> dict[str, float]:
        return {} if self.engine is None else self.engine.health()

    def status(self) -> dict[str, Any]:
        streams: dict[str, Any] = {n: {"state": "failed", "error": str(e)}
                                   for n, e in self.failed.items()}
        if self.engine is not None:
            for name, stage in self.engine.streams().items():
                streams[name] = stage.stats()
        return {"ready": self.ready.is_set(), "model_loaded": self.model_loaded,
                "inputs_open": self.inputs_open, "sinks_bound": self.sinks_bound,
                "model": self.backend.name if self.backend else None,
                "health_s": self.health(), "streams": streams,
                "worker": self.engine.worker.stats() if self.engine else None,
                "sinks": self.router.stats() if self.router else [],
                **({"telephony": self.telephony.stats()} if self.telephony else {})}

