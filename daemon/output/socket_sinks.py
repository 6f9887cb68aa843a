"""Fan-out socket sinks (unix, tcp): a stuck client hurts nobody else.

``emit`` (called by the worker thread) only puts the line into an inbox and wakes a single
selector thread that accepts clients and writes to them with non-blocking sockets, so the
pipeline never waits for a consumer. Each client has a bounded buffer of
``client_buffer_events``; when a client stops reading and its buffer is full the OLDEST
event is dropped for that client alone (counted, warning rate-limited).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
from typing import Any

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import Event, to_json_line
from intentd.daemon.output.listeners import listen_tcp, listen_unix
from intentd.daemon.output.socket_client import Client

log = logging.getLogger(__name__)

CLIENT_SNDBUF_BYTES = 64 * 1024
# Clients that come and go all day (a script per event) must not flood the log or grow the
# stats: connections are logged at INFO up to this many a minute (then DEBUG), and only the
# latest departed clients are listed (their counts stay in the totals).
CLIENT_LOGS_PER_MIN = 10
GONE_KEEP = 32
# A client that shut its sending side may still read, or may be gone for good: the two look
# the same until a write fails. The oldest beyond this many are let go (bounded descriptors).
HALF_CLOSED_KEEP = 64
_CLOSE = object()


class _FanoutSink:
    """Listening socket + one selector thread that fans lines out to all clients."""

    kind = "socket"

    def __init__(self, client_buffer_events: int = 256, close_timeout_s: float = 0.5,
                 inbox_events: int = 4096) -> None:
        if client_buffer_events < 1:
            raise ConfigError(
                f"output.client_buffer_events must be >= 1, got {client_buffer_events}")
        self.name = self.kind
        self.client_buffer_events = client_buffer_events
        self.close_timeout_s = close_timeout_s
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=inbox_events)
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._inbox_dropped = 0
        self._emitted = 0
        self._accepted = 0  # selector thread only
        self._gone_dropped = 0  # events dropped for clients that have left
        self._client_logs: collections.deque[float] = collections.deque()
        # Replaced (never mutated) by the selector thread, so stats() may read it anywhere.
        self._snapshot: tuple[dict[str, Any], ...] = ()

    def _make_listener(self) -> socket.socket:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Transport-specific teardown after the listener is closed."""

    def start(self) -> None:
        self._listener = self._make_listener()
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}",
                                        daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        if self._closed or self._thread is None:
            return
        try:
            self._inbox.put_nowait((to_json_line(event) + "\n").encode("utf-8"))
            self._emitted += 1
        except queue.Full:
            # Only if the selector thread itself is starved; every client loses this one.
            self._inbox_dropped += 1
            return
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            assert self._wake_w is not None
            self._wake_w.send(b"\0")

    def close(self) -> None:
        if self._closed or self._thread is None:
            self._closed = True
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._inbox.put(_CLOSE, timeout=0.2)
        self._wake()
        self._thread.join(self.close_timeout_s + 1.0)
        if self._thread.is_alive():
            log.warning("%s: writer thread did not stop in time", self.name)
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._cleanup()

    def stats(self) -> dict[str, Any]:
        clients = list(self._snapshot)
        return {"sink": self.name, "emitted": self._emitted,
                "inbox_dropped": self._inbox_dropped,
                "dropped": sum(c["dropped"] for c in clients if c["connected"])
                + self._gone_dropped + self._inbox_dropped,
                "clients_accepted": self._accepted,
                "clients": clients}

    # --- selector thread -------------------------------------------------------------

    def _run(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        clients: dict[socket.socket, Client] = {}
        gone: collections.deque[dict[str, Any]] = collections.deque(maxlen=GONE_KEEP)
        close_deadline: float | None = None
        try:
            while True:
                timeout = None
                if close_deadline is not None:
                    timeout = max(0.0, close_deadline - time.monotonic())
                for key, mask in sel.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(sel, clients)
                    elif key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        client = clients.get(key.fileobj)  # type: ignore[arg-type]
                        if client is not None and not self._service(client, mask):
                            self._drop_client(sel, clients, client, gone)
                half = [c for c in clients.values() if c.read_closed]
                for client in half[: max(0, len(half) - HALF_CLOSED_KEEP)]:
                    self._drop_client(sel, clients, client, gone)
                if self._drain_inbox(clients) and close_deadline is None:
                    close_deadline = time.monotonic() + self.close_timeout_s
                for client in list(clients.values()):
                    try:
                        client.flush()
                    except OSError:
                        self._drop_client(sel, clients, client, gone)
                        continue
                    want = (0 if client.read_closed else selectors.EVENT_READ) | (
                        selectors.EVENT_WRITE if client.pending else 0)
                    _watch(sel, client.sock, want)
                self._snapshot = tuple(gone) + tuple(
                    c.snapshot(True) for c in clients.values())
                if close_deadline is not None and (
                        not any(c.pending for c in clients.values())
                        or time.monotonic() >= close_deadline):
                    break
        except Exception:
            log.exception("%s: writer thread failed; socket clients get no more events",
                          self.name)
        finally:
            for client in list(clients.values()):
                if client.pending:
                    log.warning("client %s: %d event(s) not delivered at shutdown",
                                client.label, len(client.buf) + (client.current is not None))
                self._drop_client(sel, clients, client, gone, quiet=True)
            self._snapshot = tuple(gone)
            sel.close()
            self._listener.close()

    def _accept(self, sel: selectors.BaseSelector, clients: dict[socket.socket, Client]) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.name, exc)
                return
            sock.setblocking(False)
            # Bound kernel-side buffering so the per-client drop policy, not TCP
            # autotuning (MBs of stale events), decides what a slow client gets.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF_BYTES)
            self._accepted += 1
            label = f"{self.name}#{self._accepted}"
            if isinstance(addr, tuple):
                label += f"@{addr[0]}:{addr[1]}"
            clients[sock] = Client(sock, label, self.client_buffer_events)
            sel.register(sock, selectors.EVENT_READ, None)
            self._log_client("%s: client %s connected", self.name, label)

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._wake_r.recv(4096):
                pass

    @staticmethod
    def _service(client: Client, mask: int) -> bool:
        """Handle readiness; False when the client has gone away."""
        if mask & selectors.EVENT_READ:
            try:
                # Clients have nothing to say. End of input may be a half-close (the client
                # still reads): stop reading; a write to a peer that is gone drops it.
                if not client.sock.recv(4096):
                    client.read_closed = True
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        return True

    def _drain_inbox(self, clients: dict[socket.socket, Client]) -> bool:
        """Move queued lines into every client buffer; True once close was requested."""
        closing = False
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return closing
            if item is _CLOSE:
                closing = True
                continue
            assert isinstance(item, bytes)
            for client in clients.values():
                client.enqueue(item)

    def _drop_client(self, sel: selectors.BaseSelector, clients: dict[socket.socket, Client],
                     client: Client, gone: collections.deque[dict[str, Any]],
                     quiet: bool = False) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(client.sock)
        clients.pop(client.sock, None)
        client.sock.close()
        gone.append(client.snapshot(False))
        self._gone_dropped += client.dropped
        if not quiet:
            self._log_client("%s: client %s disconnected (sent %d, dropped %d)", self.name,
                             client.label, client.sent, client.dropped)

    def _log_client(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        while self._client_logs and now - self._client_logs[0] > 60.0:
            self._client_logs.popleft()
        if len(self._client_logs) < CLIENT_LOGS_PER_MIN:
            self._client_logs.append(now)
            log.info(msg, *args)
        else:
            log.debug(msg, *args)


def _watch(sel: selectors.BaseSelector, sock: socket.socket, events: int) -> None:
    """Register ``sock`` for ``events`` (0: for none)."""
    try:
        current = sel.get_key(sock).events
    except KeyError:
        current = 0
    if events == current:
        return
    if not events:
        sel.unregister(sock)
    elif not current:
        sel.register(sock, events, None)
    else:
        sel.modify(sock, events)


class UnixSocketSink(_FanoutSink):
    kind = "unix"

    def __init__(self, path: str, mode: int = 0o660, client_buffer_events: int = 256,
                 close_timeout_s: float = 0.5) -> None:
        super().__init__(client_buffer_events, close_timeout_s)
        self.path = path
        self.mode = mode
        self.name = f"unix:{path}"
        self._bound = False

    def _make_listener(self) -> socket.socket:
        inherited = _activated_socket(self.path)
        if inherited is not None:  # systemd made it (intentd.socket) and keeps it
            log.info("listening on unix:%s (from systemd socket activation)", self.path)
            return inherited
        sock = listen_unix(self.path, self.mode, f"output unix:{self.path}")
        self._bound = True
        log.info("listening on unix:%s (mode %04o)", self.path, self.mode)
        return sock

    def _cleanup(self) -> None:
        if self._bound:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._bound = False


def _activated_socket(path: str) -> socket.socket | None:
    """The listening unix socket at ``path`` among those systemd passed (``LISTEN_FDS``, from
    descriptor 3; ``sd_listen_fds(3)``), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for fd in range(3, 3 + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        if sock.family == socket.AF_UNIX and sock.getsockname() == os.path.abspath(path):
            sock.setblocking(False)
            return sock
        sock.detach()  # not ours: leave the descriptor as it is
    return None


class TcpSink(_FanoutSink):
    kind = "tcp"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, client_buffer_events: int = 256,
                 close_timeout_s: float = 0.5) -> None:
        super().__init__(client_buffer_events, close_timeout_s)
        self.host = host or "127.0.0.1"
        self.port = port
        self.name = f"tcp:{self.host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (useful with port 0)."""
        assert self._listener is not None, "start() first"
        addr = self._listener.getsockname()
        return addr[0], addr[1]

    def _make_listener(self) -> socket.socket:
        sock = listen_tcp(self.host, self.port, f"output tcp:{self.host}:{self.port}")
        self._listener = sock
        self.name = "tcp:{}:{}".format(*self.address)
        log.info("listening on %s", self.name)
        return sock

