"""One-run performance table of intentd on this machine (the "Performance" issue).

Measures, in one run (min / median over repeats, warm-up excluded):

a. HF ``pipeline("audio-classification")`` on the wav2vec2-base architecture
   (``Wav2Vec2Config()``, random weights), CPU ms per 1 s window: the baseline;
b. the daemon's CPU ms per second of streamed audio (and of speech) with the compact model,
   through the real engine at full speed on a generated call (speech about half the time);
c. the same with the wav2vec2-base window model, exported to ONNX (``intentd-train export``,
   agreement windows from the call): per backend that agrees with torch (torch, onnx,
   onnx-int8), ``w2v2_daemon_ms`` the fastest; and the mean verdict on that one;
d. end-of-speech -> event latency p50 / p95 on a live-paced stream (after the hangover);
e. idle CPU (% of one core) with one live-paced stream of silence and one of room noise;
f. the most concurrent real-time 8 kHz call streams one process sustains (bench/callcenter.py's
   criterion: no stream falls behind), and RSS at that load;
g. process start -> ready time and RSS with one model loaded.

Prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/run.py [--model DIR --spec SPEC] [--out DIR] [--quick] [--skip f]

Without ``--model`` a small compact model is built in the work dir from the tests' tiny spec
(~1-2 min, kept for the next run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import run_parts as rp  # noqa: E402  (bench/ is not a package)

from intentd.trainer.tuning.export import cpu_model  # noqa: E402

# The tests' tiny spec: three intents, synthesizes and trains fast.
TINY_SPEC = BENCH.parent / "tests" / "tiny.yaml"

Row = tuple[str, str, str]  # measurement, value, conditions


def _ms(s: dict[str, float], unit: str = "ms") -> str:
    return f"{s['min']:.1f} / {s['median']:.1f} {unit}"


def capacity(model: Path, spec: Path, work: Path, start: int, top: int, resolution: int,
             budget_s: float) -> dict[str, Any]:
    """bench/callcenter.py's levels (fresh daemon, ``intentd-replay`` of 8 kHz calls, both
    tracks, real-time) searched upward by doubling, then bisected, within ``budget_s``: a
    level is only started when the last level's duration still fits."""
    import argparse as ap

    import callcenter as cc

    work.mkdir(parents=True, exist_ok=True)
    (work / "c.yaml").write_text("telephony:\n  max_streams: 100000\ninputs: []\n")
    folder = cc.make_calls(spec, work, 2, 3)
    args = ap.Namespace(model=model.resolve(), tracks="both", spread_s=5.0, max_lag_s=1.0)
    t_end, last = time.monotonic() + budget_s, 0.0
    levels: list[dict[str, Any]] = []

    def level(n: int) -> bool | None:
        nonlocal last
        if time.monotonic() + last > t_end:
            return None  # out of budget: the search stops where it is
        t0 = time.monotonic()
        r = cc.run_level(args, folder, n, work)
        last = time.monotonic() - t0
        levels.append(r)
        print(f"  f: {r['streams']} streams: sustained={r['sustained']} lag p95 "
              f"{r['lag_s_p95']} s, sender behind {r['sender_behind_s']} s, RSS {r['rss_mb']} "
              f"MB, {r['cpu_cores']} cores ({last:.0f} s)", file=sys.stderr, flush=True)
        return bool(r["sustained"])

    good, bad, n = 0, 0, start
    while n <= top:
        ok = level(n)
        if ok is None:
            break
        if not ok:
            bad = n
            break
        good, n = n, n * 2
    if bad and not good:  # even the first level lagged: look below it
        n = bad // 2 // 2 * 2
        while n >= 2 and not good:
            ok = level(n)
            if ok is None:
                break
            good, bad = (n, bad) if ok else (0, n)
            n = n // 2 // 2 * 2
    while good and bad and bad - good > resolution:
        mid = (good + bad) // 2 // 2 * 2
        ok = level(mid)
        if ok is None:
            break
        good, bad = (mid, bad) if ok else (good, mid)
    best = max((r for r in levels if r["sustained"]), key=lambda r: r["streams"], default=None)
    return {"max_streams": best["streams"] if best else 0, "first_failed": bad or None,
            "rss_mb": best["rss_mb"] if best else None,
            "rss_mb_idle": best["rss_mb_idle"] if best else None,
            "rss_mb_per_stream": round((best["rss_mb"] - best["rss_mb_idle"])
                                       / best["streams"], 2) if best else None,
            "cpu_cores": best["cpu_cores"] if best else None,
            "lag_s_p95": best["lag_s_p95"] if best else None,
            "levels": [(r["streams"], r["sustained"]) for r in levels],
            "budget_hit": bool(time.monotonic() + last > t_end)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a compact model dir (default: build a tiny one)")
    p.add_argument("--spec", type=Path, default=BENCH.parent / "examples/intents/banking.yaml",
                   help="the spec the generated calls are spoken from (default: banking, whose "
                   "~2-4 s commands with 1.5-3 s pauses make speech about half of a call; the "
                   "model's cost does not depend on the words)")
    p.add_argument("--out", type=Path, help="work dir (default: a new temp dir)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, small levels (~4 min)")
    p.add_argument("--skip", nargs="*", default=[], choices=list("abcdefg"),
                   help="measurements to leave out")
    args = p.parse_args()
    t_start = time.monotonic()
    work = (args.out or Path(tempfile.mkdtemp(prefix="intentd-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    q = args.quick
    skip = set(args.skip)
    rows: list[Row] = []
    res: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "quick": q}
    note: list[str] = []

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:5.0f} s] {msg}", file=sys.stderr, flush=True)

    spec = args.spec.resolve()
    if args.model:
        model = args.model.resolve()
    else:
        say("no --model: building a compact model from the tests' tiny spec in the work dir")
        t0 = time.monotonic()
        # The trainer logs to stdout; keep stdout for the table and the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            model, _ = rp.build_compact(TINY_SPEC.read_text(encoding="utf-8"), work)
        note.append(f"compact model built here from the tests' tiny spec "
                    f"({time.monotonic() - t0:.0f} s, not part of any measurement): {model}")
    res["model"] = str(model)

    w2v2 = None
    if not {"a", "c"} <= skip:
        say("saving wav2vec2-base (Wav2Vec2Config(), random weights)")
        w2v2 = rp.save_w2v2_base(work / "w2v2_base")

    if "a" not in skip and w2v2:
        say("a: HF pipeline")
        n = 5 if q else 15
        one = rp.pipeline_cost(w2v2, n, 1)
        many = rp.pipeline_cost(w2v2, n, os.cpu_count() or 1)
        res["pipeline_ms"] = round(one["cpu_ms"]["min"], 1)
        res["pipeline_ms_default_threads"] = round(many["cpu_ms"]["min"], 1)
        rows += [("a. pipeline CPU ms / 1 s window", _ms(one["cpu_ms"]),
                  f"wav2vec2-base random, torch threads 1 (as the daemon), {n} calls"),
                 ("   same, default threads: CPU", _ms(many["cpu_ms"]),
                  f"torch threads {many['threads']}, wall {_ms(many['wall_ms'])}")]

    utts = 4 if q else 10
    call, audio_s, speech_s = rp.make_call(spec, work, utts, 7)
    cond = (f"16 kHz call, {utts} commands, {audio_s:.0f} s audio, speech {speech_s:.0f} s "
            f"({100 * speech_s / audio_s:.0f}%), --no-realtime, start-up subtracted")
    reps = 2 if q else 3
    if "b" not in skip:
        say("b: compact model through the daemon")
        b = rp.cpu_per_audio(model, call, audio_s, speech_s, work, reps)
        res["compact_ms_per_audio_s"] = round(b["ms_per_audio_s"]["min"], 2)
        res["compact_ms_per_speech_s"] = round(b["ms_per_speech_s"]["min"], 2)
        rows += [("b. compact CPU ms / s of audio", _ms(b["ms_per_audio_s"]),
                  f"{cond}, {reps} runs"),
                 ("   compact CPU ms / s of speech", _ms(b["ms_per_speech_s"]),
                  f"same runs; peak RSS {b['rss_mb']:.0f} MB")]
        if "pipeline_ms" in res:
            res["compact_vs_pipeline"] = round(res["pipeline_ms"]
                                               / max(res["compact_ms_per_audio_s"], 1e-6), 1)
            rows.append(("   compact vs pipeline", f"{res['compact_vs_pipeline']}x",
                         "pipeline ms per 1 s window / compact ms per 1 s of audio"))

    if "c" not in skip and w2v2:
        # A window model runs on torch (transformers), onnx or onnx-int8 (model.backend); the
        # export times each and checks its top-1 agreement with torch on this call's speech.
        # Verdicts: "utterance" (one pass per utterance, the default) on every backend that
        # agrees, and "mean" (every 1 s window at 0.5 s hop in speech) on the fastest of them.
        c_call, c_audio, c_speech = (call, audio_s, speech_s) if q else \
            rp.make_call(spec, work, 4, 8)
        c_reps = 1 if q else 2
        say("c: exporting wav2vec2-base to ONNX (intentd-train export)")
        exp = rp.export_window_model(w2v2, c_call)
        res["w2v2_agreement"] = exp["agreement"]
        res["w2v2_export_ms_per_window"] = exp["ms_per_window"]
        rows.append(("c. w2v2 export: ms / 1 s window", " / ".join(
            f"{exp['ms_per_window'][b]:.0f}" for b in rp.W2V2_BACKENDS),
            f"torch / onnx / onnx-int8 wall, 1 thread; top-1 agreement with torch: onnx "
            f"{exp['agreement']['onnx']}, int8 {exp['agreement']['onnx-int8']} over "
            f"{exp['windows']} windows; usable {exp['usable']}"))
        agreeing = [b for b in rp.W2V2_BACKENDS if b == "torch" or exp["usable"][b]]
        by_backend: dict[str, float] = {}
        for backend in agreeing:
            say(f"c: wav2vec2-base through the daemon, backend {backend}")
            c = rp.cpu_per_audio(w2v2, c_call, c_audio, c_speech, work, c_reps,
                                 "--backend", backend)
            by_backend[backend] = round(c["ms_per_audio_s"]["min"], 1)
            rows += [(f"c. w2v2 {backend}/utterance: ms / s audio", _ms(c["ms_per_audio_s"]),
                      f"{c_audio:.0f} s call, speech {100 * c_speech / c_audio:.0f}%, "
                      f"{c_reps} run(s), peak RSS {c['rss_mb']:.0f} MB"),
                     (f"   w2v2 {backend}/utterance: ms / s speech", _ms(c["ms_per_speech_s"]),
                      "same runs")]
            if by_backend[backend] <= min(by_backend.values()):
                res["w2v2_backend"] = backend
                res["w2v2_daemon_ms"] = by_backend[backend]
                res["w2v2_daemon_ms_per_speech_s"] = round(c["ms_per_speech_s"]["min"], 1)
        res["w2v2_daemon_ms_by_backend"] = by_backend
        best = res["w2v2_backend"]
        say(f"c: wav2vec2-base through the daemon, backend {best}, verdict mean")
        c = rp.cpu_per_audio(w2v2, c_call, c_audio, c_speech, work, c_reps,
                             "--backend", best, "--verdict", "mean")
        res["w2v2_daemon_ms_mean_verdict"] = round(c["ms_per_audio_s"]["min"], 1)
        res["w2v2_daemon_ms_per_speech_s_mean_verdict"] = round(c["ms_per_speech_s"]["min"], 1)
        rows += [(f"c. w2v2 {best}/mean: ms / s audio", _ms(c["ms_per_audio_s"]), "same call"),
                 (f"   w2v2 {best}/mean: ms / s speech", _ms(c["ms_per_speech_s"]), "same runs")]
        if "pipeline_ms" in res:
            res["w2v2_speedup"] = round(res["pipeline_ms"] / max(res["w2v2_daemon_ms"], 1e-6), 1)
            rows.append(("   w2v2 speedup (utterance)", f"{res['w2v2_speedup']}x",
                         f"pipeline on every 1 s of audio / daemon ({best}) per 1 s of audio"))

    live: list[dict[str, Any]] = []
    if "d" not in skip:
        say("d: live-paced call, end-of-speech latency")
        d = rp.run_live(model, call, work)
        live.append(d)
        lat = d["latency_ms"]
        res["eos_p50_ms"] = rp.percentile(lat, 0.5)
        res["eos_p95_ms"] = rp.percentile(lat, 0.95)
        rows.append(("d. end of speech -> event p50/p95",
                     f"{res['eos_p50_ms']} / {res['eos_p95_ms']} ms" if lat else "no verdicts",
                     f"{len(lat)} verdicts, one real-time {audio_s:.0f} s call, compact, "
                     "after the 1.3 s hangover"))
    if "e" not in skip:
        secs = 10.0 if q else 20.0
        for kind in ("silence", "noise"):
            say(f"e: idle CPU, live {kind}")
            wav = rp.make_background(work, kind, secs + 15)
            e = rp.run_live(model, wav, work, cpu_window=(3.0, secs))
            live.append(e)
            res["idle_cpu_pct" if kind == "silence" else "idle_noise_cpu_pct"] = round(
                e["cpu_pct"], 2)
            rows.append((f"e. idle CPU, {kind}", f"{e['cpu_pct']:.2f} % of a core",
                         f"one live 16 kHz stream, {secs:.0f} s from 3 s after ready"
                         + (", pink ~-36 dBFS" if kind == "noise" else "")))
    if "g" not in skip:
        say("g: start -> ready")
        while len(live) < (2 if q else 3):
            live.append(rp.run_live(model, rp.make_background(work, "silence", 3.0), work))
        ready = rp.stats([x["ready_s"] for x in live])
        rss = rp.stats([x["rss_mb"] for x in live])
        res["ready_s"] = round(ready["min"], 2)
        res["rss_mb_model"] = round(rss["median"], 1)
        rows += [("g. start -> ready", _ms(ready, "s"),
                  f"compact, {ready['n']} starts (d/e runs included), Popen -> 'ready:' log"),
                 ("   RSS, one model loaded", _ms(rss, "MB"), "1 s after ready, one stream")]

    if "f" not in skip:
        say("f: capacity search (8 kHz calls, real time)")
        budget = 100.0 if q else 360.0
        f = capacity(model, spec, work / "callcenter", 2 if q else 8, 4 if q else 512,
                     2 if q else 8, budget)
        res.update(max_streams=f["max_streams"], rss_mb=f["rss_mb"],
                   rss_mb_per_stream=f["rss_mb_per_stream"])
        rows += [("f. max real-time streams", str(f["max_streams"]),
                  f"8 kHz call tracks, speech ~half, lag p95 <= 1 s, no sender wait; levels "
                  f"{f['levels']}" + (" (time budget hit)" if f["budget_hit"] else "")),
                 ("   RSS at that load", f"{f['rss_mb']} MB", f"idle {f['rss_mb_idle']} MB, "
                  f"{f['rss_mb_per_stream']} MB/stream, {f['cpu_cores']} cores busy")]

    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"\nintentd performance - {res['cpu']}, {res['cores']} cores"
          f"{' (quick)' if q else ''}; min / median over repeats")
    print(f"{'measurement':{w}s}  {'value':>24s}  conditions")
    for name, value, conditions in rows:
        print(f"{name:{w}s}  {value:>24s}  {conditions}")
    for line in note:
        print(f"note: {line}")
    res["bench_s"] = round(time.monotonic() - t_start)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
