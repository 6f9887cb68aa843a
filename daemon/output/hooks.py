"""Command hooks: run a program when an intent is recognized.

Two ways in, one sink: ``--output exec:PROGRAM`` runs PROGRAM for every verdict (intent and
no_match), and the config's ``hooks:`` runs a program per intent
(``lights_on: [/usr/local/bin/lights, on]``). A program is an argv list, never a shell
line, so nothing in an event can inject a command. It gets the event's JSON line on stdin
and, in its environment, ``INTENTD_TYPE``, ``INTENTD_INTENT`` (empty for no_match),
``INTENTD_SCORE``, ``INTENTD_STREAM``, ``INTENTD_UTTERANCE_ID``, ``INTENTD_TEXT`` (the
command as a sentence) and ``INTENTD_SLOT_<NAME>`` per slot heard (name upper-cased, other
characters than letters and digits as ``_``).

Nothing here may slow the model worker: ``emit`` appends to a bounded queue (full: the
oldest waiting run is dropped, counted, logged) and ``output.hook_max_running`` threads run
the programs. A run longer than ``output.hook_timeout_s`` is killed with its process group;
a failing or slow program is logged (rate-limited) and never blocks other sinks. The
programs' own output goes to the log, never to stdout (which carries only events).
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from intentd.daemon.errors import ConfigError
from intentd.daemon.output import hermes
from intentd.daemon.output.events import REJECT_LABEL, Event, IntentEvent, to_json_line

log = logging.getLogger(__name__)

ANY = "*"  # an exec: target: every verdict
WARN_INTERVAL_S = 10.0
CLOSE_WAIT_S = 2.0
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True)
class HookSettings:
    timeout_s: float = 10.0
    max_running: int = 4
    queue_events: int = 100


def hook_settings(output_cfg: Any) -> HookSettings:
    """The hook keys of the config's ``output:`` section (defaults without one)."""
    d = HookSettings()
    return HookSettings(float(getattr(output_cfg, "hook_timeout_s", d.timeout_s)),
                        int(getattr(output_cfg, "hook_max_running", d.max_running)),
                        int(getattr(output_cfg, "hook_queue_events", d.queue_events)))


def check_intents(hooks: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str]) -> None:
    """A hook for an intent the model does not have would never run: say so at start-up."""
    known = [lb for lb in labels if lb != REJECT_LABEL]
    for intent, _ in hooks:
        if intent not in known:
            close = difflib.get_close_matches(intent, known, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]}?" if close
                    else f"the model's intents: {', '.join(known)}")
            raise ConfigError(f"hooks.{intent}: the model has no intent {intent!r}; {hint}")


def environment(event: IntentEvent) -> dict[str, str]:
    """The INTENTD_* variables for one verdict."""
    env = {"INTENTD_TYPE": event.type, "INTENTD_INTENT": event.intent or "",
           "INTENTD_SCORE": f"{event.score:.4f}", "INTENTD_STREAM": event.stream,
           "INTENTD_UTTERANCE_ID": str(event.utterance_id),
           "INTENTD_TEXT": hermes.sentence(event)}
    for s in event.slots or ():
        env[f"INTENTD_SLOT_{_ENV_UNSAFE.sub('_', s.name).upper()}"] = s.value
    return env


class HookSink:
    def __init__(self, hooks: Sequence[tuple[str, Sequence[str]]],
                 settings: HookSettings | None = None, name: str = "hooks") -> None:
        self.name = name
        self.settings = settings or HookSettings()
        self._hooks: dict[str, list[tuple[str, ...]]] = {}
        for intent, argv in hooks:
            self._hooks.setdefault(intent, []).append(tuple(argv))
        self._queue: collections.deque[tuple[tuple[str, ...], IntentEvent]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._last_warn: dict[str, float] = {}
        self.running = 0
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.counts = {"ran": 0, "failed": 0, "timed_out": 0, "dropped": 0}

    def start(self) -> None:
        for intent, argvs in self._hooks.items():
            for argv in argvs:
                if shutil.which(argv[0]) is None:
                    where = self.name if intent == ANY else f"hooks.{intent}"
                    raise ConfigError(f"{where}: program {argv[0]!r} is not found or not "
                                      "executable; give its full path and chmod +x it")
        for k in range(self.settings.max_running):
            t = threading.Thread(target=self._run_loop, name=f"intentd-hook-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def emit(self, event: Event) -> None:
        if not isinstance(event, IntentEvent):
            return
        argvs = list(self._hooks.get(ANY, ()))
        if event.type == "intent" and event.intent is not None:
            argvs += self._hooks.get(event.intent, [])
        if not argvs:
            return
        with self._cond:
            for argv in argvs:
                if len(self._queue) >= self.settings.queue_events:
                    self._queue.popleft()
                    self.counts["dropped"] += 1
                    self._warn("dropped", f"{self.name}: {self.settings.queue_events} runs "
                               f"already wait (hooks slower than the events); dropped the "
                               f"oldest ({self.counts['dropped']} so far)")
                self._queue.append((argv, event))
            self._cond.notify()

    def _run_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                argv, event = self._queue.popleft()
                self.running += 1
            try:
                self._run(argv, event)
            finally:
                with self._cond:
                    self.running -= 1
                    self._cond.notify_all()

    def _run(self, argv: tuple[str, ...], event: IntentEvent) -> None:
        env = dict(os.environ) | environment(event)
        what = f"{self.name}: {argv[0]} ({event.intent or event.type}, {event.stream} " \
               f"#{event.utterance_id})"
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            self._count("failed")
            self._warn(argv[0], f"{what}: cannot start: {exc.strerror or exc}")
            return
        with self._cond:
            self._procs.add(proc)
        try:
            out, err = proc.communicate((to_json_line(event) + "\n").encode(),
                                        timeout=self.settings.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # its children too
            proc.communicate()
            self._count("timed_out")
            self._warn(argv[0], f"{what}: still running after {self.settings.timeout_s:g} s "
                       "(output.hook_timeout_s); killed")
            return
        finally:
            with self._cond:
                self._procs.discard(proc)
        self._count("ran")
        if out.strip():
            log.debug("%s said: %s", what, out.decode(errors="replace").strip()[-500:])
        if proc.returncode != 0:
            self._count("failed")
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self._warn(argv[0], f"{what}: exit status {proc.returncode}"
                       + (f": {last[0][:300]}" if last[0] else ""))

    def _count(self, key: str) -> None:
        with self._cond:
            self.counts[key] += 1

    def _warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= WARN_INTERVAL_S:
            self._last_warn[key] = now
            log.warning("%s", text)

    def close(self) -> None:
        """Let waiting and running hooks finish for a short while, then leave them."""
        deadline = time.monotonic() + CLOSE_WAIT_S
        with self._cond:
            while (self._queue or self.running) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            left = len(self._queue)
            self._queue.clear()
            self._closing = True
            self._cond.notify_all()
            procs = list(self._procs)
        for proc in procs:  # still running at shutdown: not left behind as orphans
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if procs:
            log.warning("%s: killed %d hook(s) still running at shutdown", self.name,
                        len(procs))
        if left:
            log.warning("%s: %d hook run(s) not started at shutdown", self.name, left)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"sink": self.name, "running": self.running, "waiting": len(self._queue),
                    **self.counts}
