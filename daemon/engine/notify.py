"""systemd's notify protocol (``sd_notify(3)``): readiness, status, watchdog, reload, stop.

A datagram of ``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET`` (an ``@``
prefix names the abstract namespace). Without the variable (not run by systemd with
``Type=notify``) every call is a no-op. A few lines over the socket rather than a
dependency: the PyPI ``sdnotify`` package is unmaintained, and the protocol is this small.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self._addr = ("\0" + path[1:]) if path.startswith("@") else path
        self._sock: socket.socket | None = None
        self._failed = False
        # The watchdog interval systemd expects pings within, when it is meant for us.
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one message; False when there is no socket or it failed
        (logged once: a notify socket that goes away must not stop the daemon)."""
        if not self._addr:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(fields).encode(), self._addr)
            return True
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify socket %s: %s; readiness and watchdog pings are "
                            "not delivered", self._addr.replace("\0", "@"), exc)
                self._failed = True
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload (systemd >= 253) match this to its signal.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping: finishing the current utterances")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
