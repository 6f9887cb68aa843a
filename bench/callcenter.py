"""Capacity of one daemon for live call-center monitoring: how many concurrent real-time
8 kHz phone calls it keeps up with, and its resident memory at that load.

Generates ``--files`` calls (held-out voices of ``--spec``, a phone line's band, speech about
half of the time: 1-3 s pauses of line noise between commands), then for each load level
starts ``intentd --listen ws://127.0.0.1:0/media`` afresh and sends that many streams with
``intentd-replay`` at real-time pace (``--tracks both``: a call is two streams, caller and
agent, each speaking half of the time; the calls start spread over ``--spread-s``).

A level is **sustained** when no stream fell behind:

- end-to-end lag: for each verdict, (when it was emitted) - (when the audio it was decided
  on had been sent: its ``decided_s``, after the hangover or an early answer's pause) - one
  gather block (``telephony.block_ms``); its 95th percentile stays under ``--max-lag-s``
  (default 1 s);
- the daemon took the audio as it came: the replay's sender never waited more than
  ``--max-lag-s`` on a full connection (the daemon's backpressure), no block was dropped.

Levels double from ``--start`` until one fails, then bisect down to ``--resolution``
streams. RSS is the daemon's peak resident memory during the level (``/proc``), idle RSS
is after the model loaded; per stream = (peak - idle) / streams. CPU is the daemon's user
+ system seconds per second of wall time. Prints a line per level and one JSON line.

    .venv/bin/python bench/callcenter.py --model demo/model \\
        --spec examples/intents/banking.yaml --out /tmp/cc
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from intentd.daemon.segmentation.settings import MODES

REPO = Path(__file__).resolve().parents[1]
WS_RE = re.compile(r"telephony: listening on (ws://\S+)")
BLOCK_S = 0.1  # telephony.block_ms (the default)


def make_calls(spec: Path, out: Path, n: int, utterances: int) -> Path:
    from intentd.trainer.synthesis.democall import make_call

    folder = out / "calls"
    for k in range(n):
        wav = folder / f"call{k}.wav"
        if not wav.exists():
            make_call(spec, wav, out / f"call{k}.csv", n_utterances=utterances, seed=2000 + k,
                      sample_rate_hz=8000, gap_s=(1.0, 3.0))
    return folder


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_level(args: argparse.Namespace, folder: Path, streams: int, work: Path
              ) -> dict[str, Any]:
    calls = max(1, streams // 2) if args.tracks == "both" else streams
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log, events, calls_out = work / f"d{streams}.log", work / f"e{streams}.jsonl", \
        work / f"c{streams}.jsonl"
    with open(events, "wb") as out, open(log, "wb") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "intentd.daemon", "--model", str(args.model), "--listen",
             "ws://127.0.0.1:0/media", "--output", "stdout", "--config", str(work / "c.yaml")],
            stdout=out, stderr=err, env=env, cwd=work)
    try:
        while "ready:" not in log.read_text():
            if daemon.poll() is not None:
                raise SystemExit(log.read_text()[-3000:])
            time.sleep(0.2)
        url = WS_RE.search(log.read_text()).group(1)  # type: ignore[union-attr]
        idle = _rss_mb(daemon.pid)
        peak, done = [idle], threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak.append(_rss_mb(daemon.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0, t0 = _cpu_s(daemon.pid), time.monotonic()
        replay = subprocess.run(
            [sys.executable, "-m", "intentd.daemon.telephony.replay", url, str(folder),
             "--calls", str(calls), "--tracks", args.tracks, "--spread-s", str(args.spread_s),
             "--calls-out", str(calls_out)], capture_output=True, text=True, env=env)
        cpu = (_cpu_s(daemon.pid) - cpu0) / (time.monotonic() - t0)
        time.sleep(3.0)  # the last verdicts (hangover + model)
        done.set()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    summary = json.loads(replay.stdout.splitlines()[-1]) if replay.stdout else {}
    text = log.read_text()
    tele = json.loads(text.split("telephony: summary ", 1)[1].splitlines()[0]) \
        if "telephony: summary " in text else {}
    starts = {json.loads(x)["callSid"]: json.loads(x)["start_unix"]
              for x in calls_out.read_text().splitlines()}
    lags, latency = [], []
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e["type"] not in ("intent", "no_match") or "call" not in e:
            continue
        t_heard = starts[e["call"]["callSid"]] + e["decided_s"]
        lags.append(_ts(e["ts"]) - t_heard - BLOCK_S)
        latency.append(e["latency_ms"])
    p95 = sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else float("inf")
    behind_s = summary.get("max_behind_ms", 1e9) / 1000
    ok = (summary.get("ok") == calls and p95 <= args.max_lag_s
          and behind_s <= args.max_lag_s and tele.get("dropped_blocks", 1) == 0)
    return {"streams": calls * (2 if args.tracks == "both" else 1), "calls": calls,
            "sustained": ok, "lag_s_p95": round(p95, 3),
            "lag_s_median": round(statistics.median(lags), 3) if lags else None,
            "latency_ms_p95": sorted(latency)[int(0.95 * (len(latency) - 1))] if latency
            else None, "sender_behind_s": round(behind_s, 3),
            "dropped_blocks": tele.get("dropped_blocks"), "verdicts": len(lags),
            "rss_mb_idle": round(idle, 1), "rss_mb": round(max(peak), 1),
            "cpu_cores": round(cpu, 2), "replay": summary}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--spec", required=True, type=Path, help="the model's intent spec")
    p.add_argument("--out", required=True, type=Path, help="work folder (calls are kept)")
    p.add_argument("--files", type=int, default=8, help="distinct calls (reused cyclically)")
    p.add_argument("--utterances", type=int, default=12, help="commands per call (~4 s each)")
    p.add_argument("--tracks", choices=("inbound", "both"), default="both")
    p.add_argument("--start", type=int, default=8, help="first level, streams")
    p.add_argument("--max", type=int, default=512, help="stop doubling here, streams")
    p.add_argument("--resolution", type=int, default=4, help="bisect down to this, streams")
    p.add_argument("--spread-s", type=float, default=10.0, help="calls start over this long")
    p.add_argument("--max-lag-s", type=float, default=1.0)
    p.add_argument("--levels", type=int, nargs="*", help="just these levels (streams)")
    p.add_argument("--segmentation", choices=MODES, default="model",
                   help="segmentation.mode (model: extra scorings at pauses)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "c.yaml").write_text("telephony:\n  max_streams: 100000\ninputs: []\n"
                                     f"segmentation:\n  mode: {args.segmentation}\n")
    folder = make_calls(args.spec, args.out, args.files, args.utterances)
    results: list[dict[str, Any]] = []

    def level(n: int) -> bool:
        r = run_level(args, folder, n, args.out)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "replay"}), file=sys.stderr,
              flush=True)
        return bool(r["sustained"])

    if args.levels:
        for n in args.levels:
            level(n)
    else:
        good, bad, n = 0, 0, args.start
        while n <= args.max:
            if not level(n):
                bad = n
                break
            good, n = n, n * 2
        while bad and bad - good > args.resolution:
            mid = (good + bad) // 2 // 2 * 2
            good, bad = (mid, bad) if level(mid) else (good, mid)
    best = max((r for r in results if r["sustained"]), key=lambda r: r["streams"], default=None)
    least = min((r for r in results if r["sustained"]), key=lambda r: r["streams"], default=None)
    # The first streams also bring the model's working memory (its first verdicts) and the
    # allocator's per-thread arenas; the slope between two sustained levels is what one more
    # stream costs.
    marginal = None
    if best and least and best["streams"] > least["streams"]:
        marginal = round((best["rss_mb"] - least["rss_mb"]) / (best["streams"]
                                                               - least["streams"]), 2)
    print(json.dumps({
        "max_streams": best["streams"] if best else 0, "max_calls": best["calls"] if best else 0,
        "rss_mb": best["rss_mb"] if best else None,
        "rss_mb_per_stream": round((best["rss_mb"] - best["rss_mb_idle"]) / best["streams"], 2)
        if best else None, "rss_mb_per_added_stream": marginal,
        "cpu_cores_at_max": best["cpu_cores"] if best else None,
        "cpus": os.cpu_count(), "model": str(args.model), "tracks": args.tracks,
        "levels": [{k: r[k] for k in ("streams", "sustained", "lag_s_p95", "sender_behind_s",
                                      "rss_mb", "cpu_cores")} for r in results]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
