"""systemd's notify protocol against a fake $NOTIFY_SOCKET: the notifier itself, the
supervisor's readiness / watchdog / stopping messages, and a real ``intentd`` process
(READY=1 with its pid, RELOADING=1 + MONOTONIC_USEC and READY=1 around SIGHUP, watchdog
pings, STOPPING=1)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_engine import ArraySource, FedSource, cfg_for, make, two_commands

from intentd.daemon.engine import supervisor as S
from intentd.daemon.engine.notify import Notifier

REPO = Path(__file__).resolve().parents[1]


class FakeSystemd:
    """A datagram socket where notifications land, at a path or in the abstract namespace."""

    def __init__(self, where: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(("\0" + where[1:]) if where.startswith("@") else where)
        self.sock.settimeout(0.2)
        self.address = where
        self.messages: list[dict[str, str]] = []

    def receive(self, until: str, timeout_s: float = 60.0) -> dict[str, str]:
        """Messages until one holding ``until`` (a KEY=VALUE or a KEY); that one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(msg)
            key, _, value = until.partition("=")
            if key in msg and (not value or msg[key] == value):
                return msg
        raise AssertionError(f"no {until!r} in {self.messages}")


def test_notifier_speaks_to_abstract_and_path_sockets(tmp_path: Path) -> None:
    name = f"@intentd-test-{os.getpid()}"
    for where in (name, str(tmp_path / "notify.sock")):
        systemd = FakeSystemd(where)
        n = Notifier({"NOTIFY_SOCKET": where, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_s == 2.0
        assert n.ready("up")
        assert systemd.receive("READY=1") == {"READY": "1", "STATUS": "up",
                                              "MAINPID": str(os.getpid())}
        n.reloading()
        msg = systemd.receive("RELOADING=1")
        assert abs(int(msg["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 5
        n.close()
    assert not Notifier({}).send("READY=1")  # not under systemd: nothing to do
    # A watchdog meant for another process (WATCHDOG_PID) is not ours.
    assert Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000",
                     "WATCHDOG_PID": "1"}).watchdog_s is None


def test_a_vanished_notify_socket_is_logged_once(caplog: pytest.LogCaptureFixture,
                                                tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.send("READY=1") and not n.send("STATUS=x")
    assert len([r for r in caplog.records if "notify socket" in r.getMessage()]) == 1


def test_supervisor_reports_ready_pings_while_healthy_and_says_stopping(tmp_path: Path) -> None:
    systemd = FakeSystemd(str(tmp_path / "n.sock"))
    live = FedSource("live")
    sup, _ = make(cfg_for("live"), {"live": live})
    sup.notifier = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "300000"})
    runner = threading.Thread(target=sup.run)
    runner.start()
    ready = systemd.receive("READY")
    assert ready["STATUS"].startswith("1 of 1 stream(s) running; 0 utterances")
    systemd.receive("WATCHDOG=1")
    systemd.receive("WATCHDOG=1")
    live.feed(two_commands())
    live.close()
    runner.join(timeout=10)
    systemd.receive("STOPPING=1")


def test_a_stalled_stage_stops_the_pings(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(S, "STALL_S", -1.0)  # every stage counts as stalled
    systemd = FakeSystemd(str(tmp_path / "n.sock"))
    sup, _ = make(cfg_for("a"), {"a": ArraySource(two_commands(), "a")})
    sup.notifier = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "100000"})
    sup.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        sup._tick()
        time.sleep(0.02)
    sup.request_stop()
    sup.run()
    systemd.receive("STOPPING=1")
    assert not any("WATCHDOG" in m for m in systemd.messages)
    stalled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("watchdog")]
    assert stalled and all(m.endswith("no more pings to systemd") for m in stalled)
    assert len(stalled) <= 2  # logged when the set of stalled stages changes, not per tick


def test_real_daemon_notifies_systemd(compact_model: Path, tmp_path: Path) -> None:
    systemd = FakeSystemd(f"@intentd-e2e-{os.getpid()}")
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "900000",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "intentd.daemon", "--model", str(compact_model),
                          "--input", "-", "--input-rate", "16000"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        ready = systemd.receive("READY=1", timeout_s=120)
        assert ready["MAINPID"] == str(p.pid)
        assert "stream(s) running" in ready["STATUS"]
        systemd.receive("WATCHDOG=1")
        p.send_signal(signal.SIGHUP)
        reloading = systemd.receive("RELOADING=1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        systemd.receive("READY=1", timeout_s=120)
        assert p.stdin is not None
        p.stdin.close()
        systemd.receive("STOPPING=1")
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
