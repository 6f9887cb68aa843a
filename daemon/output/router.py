"""The router: every event to every sink, each sink serializing it its own way.

Called by the model worker only. A sink that raises is logged (rate-limited) and skipped
for that event; it never silences the other sinks or stops the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from intentd.daemon.output.events import Event
from intentd.daemon.output.sinks import Sink

log = logging.getLogger(__name__)

FAIL_WARN_INTERVAL_S = 10.0


class Router:
    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.failures: dict[str, int] = {}
        self._last_warn: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                name = getattr(sink, "name", repr(sink))
                self.failures[name] = self.failures.get(name, 0) + 1
                now = time.monotonic()
                if now - self._last_warn.get(name, -1e9) >= FAIL_WARN_INTERVAL_S:
                    self._last_warn[name] = now
                    log.exception("sink %s failed to emit an event (%d so far)", name,
                                  self.failures[name])

    def all_dead(self) -> bool:
        """Every sink has stopped for good (a closed stdout pipe is the one that can)."""
        return bool(self.sinks) and all(getattr(s, "dead", False) for s in self.sinks)

    def errors(self) -> list[str]:
        return [e for s in self.sinks if (e := getattr(s, "error", None))]

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("sink %s failed to close", getattr(sink, "name", sink))

    def stats(self) -> list[dict[str, Any]]:
        return [s.stats() for s in self.sinks]
