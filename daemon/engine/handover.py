"""Blocking hand-over between pipeline threads that still honours shutdown."""

from __future__ import annotations

import queue
import threading
from typing import Any


def put_unless(q: queue.Queue[Any], item: Any, stop: threading.Event, poll_s: float) -> bool:
    """Put ``item`` into the bounded ``q``, waiting for room (no data loss), but give up
    once ``stop`` is set so a full queue can never hang shutdown. True if it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False
