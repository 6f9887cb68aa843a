"""A real mosquitto broker for tests, on a free loopback port, and a paho subscriber.

The broker keeps its state on disk (saved when it is stopped with SIGTERM), so that a
subscriber's session (its subscriptions and the QoS 1 messages queued for it) survives the
broker going away and coming back on the same port, as a production broker with persistence
does. (After SIGKILL a broker restarts from an older snapshot and delivers again what it
had already delivered: at-least-once on the broker's side, which a test of intentd must
not count against intentd.) The subscriber also sees the broker's own redeliveries: a
message the broker sent before it stopped and sends again, flagged DUP, after it restarted
(its acknowledgement was lost with the connection). Those are :attr:`Subscriber.redelivered`,
kept apart from :attr:`Subscriber.messages`; a message intentd itself published twice would
come as a new, unflagged message.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path, port: int | None = None, tls: bool = False) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.skip("mosquitto is not installed (bash .ci/setup installs it)")
        self.exe = exe
        self.dir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        tls_lines = ""
        if tls:  # a self-signed certificate for 127.0.0.1; clients trust it as their CA
            self.ca = workdir / "cert.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(workdir / "key.pem"), "-out", str(self.ca),
                            "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            tls_lines = (f"cafile {self.ca}\ncertfile {self.ca}\n"
                         f"keyfile {workdir / 'key.pem'}\n")
        # Started as root, mosquitto drops to the "mosquitto" user, who cannot write here.
        self.conf.write_text(
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n{tls_lines}allow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n")

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                log = (self.dir / "mosquitto.log")
                raise RuntimeError("mosquitto exited: "
                                   + (log.read_text() if log.exists() else "no log"))
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Subscriber:
    """A persistent-session QoS 1 subscriber that reconnects by itself; collects messages."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",),
                 client_id: str = "intentd-test-sub") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, Any]] = []
        self.redelivered: list[tuple[str, Any]] = []
        self._seen: set[bytes] = set()
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.topics = topics
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=False)
        c.reconnect_delay_set(0.2, 1)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise RuntimeError("subscription not acknowledged")

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if not getattr(flags, "session_present", False):
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload
        with self._lock:
            key = msg.topic.encode() + b"\0" + msg.payload
            if msg.dup and key in self._seen:
                self.redelivered.append((msg.topic, payload))
                return
            self._seen.add(key)
            self.messages.append((msg.topic, payload))
            self._lock.notify_all()

    def wait_for(self, n: int, timeout_s: float, prefix: str = "") -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                got = [m for m in self.messages if m[0].startswith(prefix)]
                left = deadline - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self._lock.wait(min(left, 0.1))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
