"""The exit summary the supervisor logs: one line per stream the engine still holds, one
for the worker and the socket clients' drops."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from intentd.daemon.engine.engine import Engine
    from intentd.daemon.output.router import Router

log = logging.getLogger(__name__)


def log_summary(engine: Engine | None, router: Router | None) -> None:
    if engine is None:
        return
    for name, stage in engine.streams().items():
        st = stage.stats()
        src = st["source_stats"]
        log.info("summary %s: %.1f s audio, %d blocks (%d dropped, %d overflows), "
                 "%d utterances (%d discarded, %d pauses shortened), %d windows%s", name,
                 st["samples_in"] / max(1, stage.source.sample_rate_hz),
                 src.get("blocks", 0), src.get("dropped_blocks", 0),
                 src.get("overflows", 0), st["utterances"], st["discarded"],
                 st["pauses_shortened"], st["windows"],
                 f", failed: {stage.error}" if stage.error else "")
    wk = engine.worker.stats()
    drops = [f"{c['client']}={c['dropped']}" for s in (router.stats() if router else [])
             for c in s.get("clients", [])]
    log.info("summary: events %s, %d windows classified, latency median %s ms, "
             "client drops [%s]", wk["events"], wk["windows_classified"],
             wk["latency_ms_median"], ", ".join(drops))
