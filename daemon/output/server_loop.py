"""An asyncio event loop in a thread of its own, for the network servers (Wyoming,
telephony): started once the engine runs, stopped within the daemon's exit promise, and
the way the engine's threads hand work to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from intentd.daemon.errors import ConfigError

log = logging.getLogger(__name__)

SERVE_TIMEOUT_S = 5.0
CLOSE_S = 0.8  # within the daemon's 2 s exit promise, with the engine's drain


class ServerLoop:
    """The loop thread of one server. Its ``main`` coroutine binds what it serves, calls
    :meth:`serving`, then awaits :attr:`stopping` and closes its connections."""

    def __init__(self, label: str) -> None:
        self.label = label  # names the thread and the log lines: "wyoming", "telephony"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None  # set by stop(); created in the loop
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    def start(self, main: Callable[[], Awaitable[None]], where: str) -> None:
        """Run ``main`` in the thread; return once it serves. ConfigError naming ``where``
        when it failed or did not get there in time."""
        self._thread = threading.Thread(target=self._run, args=(main,),
                                        name=f"intentd-{self.label}", daemon=True)
        self._thread.start()
        if not self._serving.wait(SERVE_TIMEOUT_S) or self.failure is not None:
            raise ConfigError(f"{where}: the server did not start "
                              f"({self.failure or 'timeout'})")

    def serving(self) -> None:
        """Called by ``main`` once clients can connect."""
        self._serving.set()

    def stop(self) -> bool:
        """Ask ``main`` to finish and wait for the thread (a bounded time); False when the
        loop never ran."""
        loop, stopping = self.loop, self.stopping
        if self._thread is None or loop is None or stopping is None:
            return False
        with contextlib.suppress(RuntimeError):  # the loop ended already
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(CLOSE_S + 0.5)
        if self._thread.is_alive():
            log.warning("%s: the server thread did not stop in time", self.label)
        return True

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in the loop, from any thread; nothing when it has ended."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(fn, *args)

    def _run(self, main: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main(main))
        except BaseException as exc:
            self.failure = exc
            log.exception("%s: the server failed", self.label)
        finally:
            self._serving.set()
            with contextlib.suppress(Exception):
                loop.close()

    async def _main(self, main: Callable[[], Awaitable[None]]) -> None:
        self.stopping = asyncio.Event()
        await main()
