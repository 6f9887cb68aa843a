"""The scale-out example end to end: ``examples/scale-out/run.sh`` starts mosquitto, two
intentd instances and HAProxy on loopback; 16 generated calls go through HAProxy with
``intentd-replay``; every verdict of either instance arrives exactly once at the broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from broker import Subscriber, free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "examples" / "scale-out" / "run.sh"
N_CALLS = 16


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory, tiny_spec: Any) -> Path:
    from intentd.trainer.synthesis.democall import make_call

    d = tmp_path_factory.mktemp("scale_calls")
    for k in range(4):
        make_call(tiny_spec, d / f"call{k}.wav", d / f"call{k}.csv", n_utterances=2,
                  seed=40 + k)
    return d


def test_two_instances_behind_haproxy_publish_every_verdict_once(
        calls: Path, compact_model: Path, tmp_path: Path) -> None:
    for tool in ("haproxy", "mosquitto"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed (bash .ci/setup installs it)")
    bin_dir = Path(sys.executable).parent
    ports = {k: free_port() for k in ("FRONT_PORT", "BROKER_PORT", "INTENTD_A_PORT",
                                      "INTENTD_B_PORT")}
    env = dict(os.environ, **{k: str(v) for k, v in ports.items()},
               MODEL=str(compact_model), INTENTD=str(bin_dir / "intentd"),
               EVENTS_DIR=str(tmp_path), PATH=f"{bin_dir}:/usr/sbin:{os.environ['PATH']}")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(["bash", str(RUN), "2"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not all(_listening(ports[k]) for k in ports):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        # HAProxy checks each instance every second and sends calls only to those it saw up.
        time.sleep(3.0)
        sub = Subscriber(ports["BROKER_PORT"], ("hermes/#",), client_id="scale-out-test")
        replay = subprocess.run(
            [str(bin_dir / "intentd-replay"), f"ws://127.0.0.1:{ports['FRONT_PORT']}/media",
             str(calls), "--calls", str(N_CALLS), "--calls-out", str(tmp_path / "calls.jsonl")],
            env=env, capture_output=True, text=True, timeout=300)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        summary = json.loads(replay.stdout.splitlines()[-1])
        assert (summary["calls"], summary["ok"]) == (N_CALLS, N_CALLS), summary
        per_instance = []
        deadline = time.monotonic() + 60
        while True:
            per_instance = [[e for e in map(json.loads, p.read_text().splitlines())
                             if e["type"] in ("intent", "no_match")]
                            for p in sorted(tmp_path.glob("events-*.jsonl"))]
            verdicts = [v for vs in per_instance for v in vs]
            if len(verdicts) >= 2 * N_CALLS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        got = sub.wait_for(len(verdicts), 30)
        time.sleep(1.0)  # anything extra (a duplicate) would arrive now
        got = list(sub.messages)
        sub.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert len(per_instance) == 2 and all(per_instance), \
        f"HAProxy must spread the calls: {[len(v) for v in per_instance]}"
    assert len(verdicts) == 2 * N_CALLS  # two commands per call, one verdict each
    ids = Counter(f"{v['stream']}-{v['utterance_id']}" for v in verdicts)
    assert max(ids.values()) == 1
    assert Counter(p["id"] for _, p in got) == ids
    sids = {json.loads(x)["callSid"] for x in (tmp_path / "calls.jsonl").read_text().splitlines()}
    assert {v["call"]["callSid"] for v in verdicts} == sids
