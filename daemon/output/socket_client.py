"""One socket sink client's state: a bounded line buffer that drops the oldest line when
the client does not read, and the line in flight (never dropped)."""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import time
from typing import Any

log = logging.getLogger(__name__)

DROP_WARN_INTERVAL_S = 10.0


class Client:
    """Per-client state; touched only by the sink's selector thread."""

    def __init__(self, sock: socket.socket, label: str, capacity: int) -> None:
        self.sock = sock
        self.label = label
        self.capacity = capacity
        self.buf: collections.deque[bytes] = collections.deque()
        self.current: memoryview | None = None  # partially sent line: never dropped
        self.sent = 0
        self.dropped = 0
        self._dropped_logged = 0
        self._last_warn = -1e9
        # The peer shut its sending side (``nc HOST PORT </dev/null``): still a reader.
        self.read_closed = False

    def enqueue(self, data: bytes) -> None:
        if len(self.buf) >= self.capacity:
            # Make room by sending first; drop only if the kernel buffer is full too.
            with contextlib.suppress(OSError):  # a dead peer is noticed by the caller
                self.flush()
        if len(self.buf) >= self.capacity:
            self.buf.popleft()
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warn >= DROP_WARN_INTERVAL_S:
                log.warning("client %s is not reading: dropped %d oldest event(s) so far",
                            self.label, self.dropped)
                self._last_warn = now
        self.buf.append(data)

    @property
    def pending(self) -> bool:
        return self.current is not None or bool(self.buf)

    def flush(self) -> None:
        """Send as much as the socket takes now; raises OSError if the peer is gone."""
        while True:
            if self.current is None:
                if not self.buf:
                    return
                self.current = memoryview(self.buf.popleft())
            try:
                n = self.sock.send(self.current)
            except (BlockingIOError, InterruptedError):
                return
            self.current = self.current[n:]
            if not len(self.current):
                self.current = None
                self.sent += 1

    def snapshot(self, connected: bool) -> dict[str, Any]:
        return {"client": self.label, "sent": self.sent, "dropped": self.dropped,
                "connected": connected}
