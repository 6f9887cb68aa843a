"""The Prometheus endpoint: scraped over HTTP and parsed with prometheus_client's own parser;
per-stream counters, events by type, the latency histogram, queue, memory; config checks."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_engine import FedSource, cfg_for, make, two_commands, wait_until

from intentd.daemon.config import load_config
from intentd.daemon.errors import ConfigError
from intentd.daemon.output.metrics import parse_listen


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    hits = [v for lab, v in metrics[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, metrics.get(name))
    return hits[0]


def test_metrics_endpoint_serves_live_figures() -> None:
    live = FedSource("kitchen")
    sup, sink = make(cfg_for("kitchen", **{"output.metrics": "127.0.0.1:0"}),
                     {"kitchen": live})
    runner = threading.Thread(target=sup.run)
    runner.start()
    wait_until(lambda: sup.ready.is_set())
    assert sup.metrics is not None and sup.metrics.port > 0
    before = scrape(sup.metrics.port)
    assert value(before, "intentd_ready") == 1.0
    assert value(before, "intentd_stream_running", stream="kitchen") == 1.0
    live.feed(two_commands())
    wait_until(lambda: len(sink.verdicts("kitchen")) == 2)
    m = scrape(sup.metrics.port)
    assert value(m, "intentd_stream_utterances_total", stream="kitchen") == 2.0
    assert value(m, "intentd_stream_audio_seconds_total", stream="kitchen") > 5.0
    assert value(m, "intentd_events_total", type="intent") == 2.0
    assert value(m, "intentd_verdict_latency_seconds_count") == 2.0
    assert value(m, "intentd_verdict_latency_seconds_bucket", le="+Inf") == 2.0
    assert value(m, "intentd_resident_memory_bytes") > 10e6
    assert value(m, "intentd_model_load_seconds") >= 0.0
    live.close()
    runner.join(timeout=10)
    with pytest.raises(OSError):
        scrape(sup.metrics.port)  # closed with the daemon


def test_metrics_listen_forms_and_errors() -> None:
    assert parse_listen("9750") == ("127.0.0.1", 9750)
    assert parse_listen("0.0.0.0:9750") == ("0.0.0.0", 9750)
    assert parse_listen("[::1]:9750") == ("::1", 9750)
    for bad in ("http://x:1", "x:99999", "localhost:", "97 50"):
        with pytest.raises(ConfigError, match=r"not \[HOST:\]PORT"):
            parse_listen(bad)
    with pytest.raises(ConfigError, match=r"output\.metrics"):
        load_config(None, {"output.metrics": "nine"})


def test_a_metrics_port_in_use_is_one_clear_error() -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    sup, _ = make(cfg_for("a", **{"output.metrics": str(port)}), {"a": FedSource("a")})
    sup.load_model()
    with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port} .*free port"):
        sup.open_outputs()
    busy.close()
