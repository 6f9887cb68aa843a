"""The opt-in Prometheus endpoint (``output.metrics: [HOST:]PORT``, host 127.0.0.1 unless
given): the supervisor's figures, read at scrape time, in the exposition format of the
``prometheus_client`` library, which also serves them (a thread of its own, /metrics).

The figures come from a callable returning a :class:`Figures`, so this module knows nothing
of the engine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import StreamFigures

log = logging.getLogger(__name__)

_LISTEN = re.compile(r"^(?:(?P<host>[^:\s]+|\[[0-9A-Fa-f:.]+\]):)?(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Figures:
    ready: bool
    streams: tuple[StreamFigures, ...]  # the same per-stream figures as stats events
    events: tuple[tuple[str, int], ...]
    queue_items: int
    latency_bounds_ms: Sequence[float]  # histogram upper bounds; +inf implied
    latency_counts: Sequence[int]  # per bucket (not cumulative), the last one +inf
    latency_sum_ms: float
    realtime_factor: float | None  # audio seconds per wall second since start
    model_load_s: float | None
    rss_bytes: float


def parse_listen(text: str) -> tuple[str, int]:
    """``"9750"`` -> ``("127.0.0.1", 9750)``; ``"0.0.0.0:9750"`` binds every interface."""
    m = _LISTEN.match(text.strip())
    port = int(m["port"]) if m else -1
    if not m or not 0 <= port <= 65535:
        raise ConfigError(f"output.metrics: {text!r} is not [HOST:]PORT; use e.g. 9750 or "
                          "127.0.0.1:9750 (empty: no endpoint)")
    return (m["host"] or "127.0.0.1").strip("[]"), port


class _Collector:
    def __init__(self, figures: Callable[[], Figures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        f = self._figures()
        yield GaugeMetricFamily("intentd_ready", "1 once model, inputs and outputs are up",
                                value=float(f.ready))
        per_stream = [
            ("audio_seconds", "audio read", lambda s: s.audio_s),
            ("utterances", "utterances segmented", lambda s: s.utterances),
            ("dropped_blocks", "live audio lost to a full queue", lambda s: s.dropped_blocks),
            ("overflows", "capture device overruns", lambda s: s.overflows),
        ]
        for name, doc, get in per_stream:
            c = CounterMetricFamily(f"intentd_stream_{name}", f"{doc}, per stream",
                                    labels=["stream"])
            for s in f.streams:
                c.add_metric([s.name], float(get(s)))
            yield c
        up = GaugeMetricFamily("intentd_stream_running", "1 while the stream runs",
                               labels=["stream"])
        for s in f.streams:
            up.add_metric([s.name], float(s.state == "running"))
        yield up
        ev = CounterMetricFamily("intentd_events", "events emitted, by type", labels=["type"])
        for kind, n in f.events:
            ev.add_metric([kind], float(n))
        yield ev
        yield GaugeMetricFamily("intentd_queue_items", "work waiting for the model worker",
                                value=float(f.queue_items))
        buckets, total = [], 0
        for bound, n in zip([*f.latency_bounds_ms, float("inf")], f.latency_counts,
                            strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else f"{bound / 1000:g}",
                            float(total)))
        yield HistogramMetricFamily(
            "intentd_verdict_latency_seconds",
            "end of speech seen by the segmenter -> event emitted",
            buckets=buckets, sum_value=f.latency_sum_ms / 1000)
        if f.realtime_factor is not None:
            yield GaugeMetricFamily("intentd_realtime_factor",
                                    "audio seconds read per wall second since start",
                                    value=f.realtime_factor)
        if f.model_load_s is not None:
            yield GaugeMetricFamily("intentd_model_load_seconds", "the last model load",
                                    value=f.model_load_s)
        yield GaugeMetricFamily("intentd_resident_memory_bytes", "resident memory",
                                value=f.rss_bytes)


class MetricsServer:
    def __init__(self, listen: str, figures: Callable[[], Figures]) -> None:
        self.host, self.port = parse_listen(listen)
        self._figures = figures
        self._server: Any = None

    def start(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self._figures))  # type: ignore[arg-type]
        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"output.metrics: cannot listen on {self.host}:{self.port} "
                              f"({exc.strerror}); pick a free port") from None
        self.port = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
