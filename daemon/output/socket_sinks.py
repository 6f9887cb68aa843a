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
import stat
import threading
import time
from pathlib import Path
from typing import Any

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import Event, to_json_line

log = logging.getLogger(__name__)

DROP_WARN_INTERVAL_S = 10.0
CLIENT_SNDBUF_BYTES = 64 * 1024
_CLOSE = object()


class _Client:
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
                "dropped": sum(c["dropped"] for c in clients) + self._inbox_dropped,
                "clients": clients}

    # --- selector thread -------------------------------------------------------------

    def _run(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        clients: dict[socket.socket, _Client] = {}
        gone: list[dict[str, Any]] = []
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
                if self._drain_inbox(clients) and close_deadline is None:
                    close_deadline = time.monotonic() + self.close_timeout_s
                for client in list(clients.values()):
                    try:
                        client.flush()
                    except OSError:
                        self._drop_client(sel, clients, client, gone)
                        continue
                    want = selectors.EVENT_READ | (
                        selectors.EVENT_WRITE if client.pending else 0)
                    if sel.get_key(client.sock).events != want:
                        sel.modify(client.sock, want)
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

    def _accept(self, sel: selectors.BaseSelector, clients: dict[socket.socket, _Client]) -> None:
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
            clients[sock] = _Client(sock, label, self.client_buffer_events)
            sel.register(sock, selectors.EVENT_READ, None)
            log.info("%s: client %s connected", self.name, label)

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._wake_r.recv(4096):
                pass

    @staticmethod
    def _service(client: _Client, mask: int) -> bool:
        """Handle readiness; False when the client has gone away."""
        if mask & selectors.EVENT_READ:
            try:
                # Clients have nothing to say; reading only detects a closed connection.
                if not client.sock.recv(4096):
                    return False
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        return True

    def _drain_inbox(self, clients: dict[socket.socket, _Client]) -> bool:
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

    def _drop_client(self, sel: selectors.BaseSelector, clients: dict[socket.socket, _Client],
                     client: _Client, gone: list[dict[str, Any]], quiet: bool = False) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(client.sock)
        clients.pop(client.sock, None)
        client.sock.close()
        gone.append(client.snapshot(False))
        if not quiet:
            log.info("%s: client %s disconnected (sent %d, dropped %d)", self.name,
                     client.label, client.sent, client.dropped)


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
        where = f"output unix:{self.path}"
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise ConfigError(f"{where}: directory {parent} does not exist; create it first")
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise ConfigError(f"{where}: exists and is not a socket; refusing to replace "
                                  "it (remove it or choose another path)")
            if _unix_socket_alive(self.path):
                raise ConfigError(f"{where}: another process is listening there; stop it or "
                                  "choose another path")
            os.unlink(self.path)  # stale socket left by a crashed run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            self._bound = True
            os.chmod(self.path, self.mode)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            self._cleanup()
            raise ConfigError(f"{where}: cannot listen: {exc}") from None
        log.info("listening on unix:%s (mode %04o)", self.path, self.mode)
        return sock

    def _cleanup(self) -> None:
        if self._bound:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._bound = False


def _unix_socket_alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.2)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


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
        where = f"output tcp:{self.host}:{self.port}"
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ConfigError(f"{where}: cannot resolve host: {exc}") from None
        family, socktype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"{where}: cannot listen: {exc}") from None
        self._listener = sock
        self.name = "tcp:{}:{}".format(*self.address)
        log.info("listening on %s", self.name)
        return sock
