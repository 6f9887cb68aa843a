"""Rebuild the banking model of record and measure it as docs/results.md does.

The recipe (docs/training.md): banking data (400 per intent, seed 7), the compact model
with a head of 256 channels, its encoder tuned with a crowd of 64 voices, four one-epoch
continuations of that (+1, +2 on +1, and two more siblings) averaged into a soup, then
rounds (``--rounds``, default two of three) of one-epoch continuations of the last soup,
each averaged again; the model of record averages the members of all. Every step is one
``intentd-train`` command; a finished step leaves a marker in ``OUT/.done`` and is skipped
when the script runs again, so an interrupted rebuild (about 6 h on 2 cores) resumes at the
step it lost. Then ``intentd-eval`` measures the final model: 6 dB babble in Rhino's
protocol (gate off) on the 600 commands of record and on all held-out commands under three
other noise draws, 12 / 9 dB babble, 6 dB café, and the default config with 1 h each of
babble and silence. Writes ``OUT/record.json`` and ``OUT/record.md``.

Usage: python bench/record_model.py --out DIR [--rounds N [N ...]] [--threads N] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = ROOT / "examples" / "intents" / "banking.yaml"
# Rhino's protocol: one command per stream with short gaps, babble by max frame energy.
RHINO = ["--per-stream", "1", "--gap-s", "0.3", "0.5", "--fa-hours", "0.01"]
# Members of each round of continuations after the first soup (docs/training.md).
ROUNDS: tuple[int, ...] = (3, 3)


def steps(out: Path, rounds: tuple[int, ...] = ROUNDS, threads: int = 2
          ) -> list[tuple[str, list[str]]]:
    """(output name, argv) per step in order; each output lands in ``out/<name>``.

    ``rounds[i]`` one-epoch continuations of ``soup{i+1}`` (seeds numbered on from 5, so a
    longer recipe keeps the models of a shorter one) are averaged into ``soup{i+2}``; with
    more than one such round, ``final`` averages all their members."""
    d = str(out / "data")
    tune = ["--data", d, "--crowd-talkers", "64", "--threads", str(threads)]

    def more(src: str, dst: str, seed: int) -> tuple[str, list[str]]:
        return dst, ["intentd-train", "tune-encoder", "--model", str(out / src), "--out",
                     str(out / dst), *tune, "--epochs", "1", "--seed", str(seed)]

    def soup(dst: str, members: list[str]) -> tuple[str, list[str]]:
        flags = [a for m in members for a in ("--model", str(out / m))]
        return dst, ["intentd-train", "soup", *flags, "--data", d, "--out", str(out / dst),
                     "--threads", str(threads)]

    plan = [
        ("data", ["intentd-train", "synth", str(SPEC), "--out", d, "--seed", "7", "--force",
                  "--per-intent", "400", "--piper-share", "0", "--flite-share", "0",
                  "--gen-timbres", "400"]),
        ("fit", ["intentd-train", "fit", "--data", d, "--model", "compact", "--out",
                 str(out / "fit"), "--no-window-eval", "--head-channels", "256"]),
        ("tuned", ["intentd-train", "tune-encoder", "--model", str(out / "fit"), "--out",
                   str(out / "tuned"), *tune]),
        more("tuned", "e1", 1), more("e1", "e2", 2), more("tuned", "s3", 3),
        more("tuned", "s4", 4),
        soup("soup1", ["e1", "e2", "s3", "s4"]),
    ]
    seed = 5
    later: list[str] = []
    for k, n in enumerate(rounds, start=2):
        members = [f"r{k}s{seed + i}" for i in range(n)]
        plan += [more(f"soup{k - 1}", m, seed + i) for i, m in enumerate(members)]
        plan.append(soup(f"soup{k}", members))
        later += members
        seed += n
    # The model of record averages every member of the later rounds: six members beat the
    # last round's soup alone on the worst of four noise draws (docs/results.md).
    if len(rounds) > 1:
        plan.append(soup("final", later))
    return plan


def evaluations(out: Path, model: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of the measurements of record."""
    gate_off = str(out / "gate_off.yaml")
    base = ["intentd-eval", "--model", str(model), "--data", str(out / "data")]
    rhino = [*base, "--config", gate_off, *RHINO]

    def at(name: str, *extra: str) -> tuple[str, list[str]]:
        return name, [*rhino, "--out", str(out / "eval" / name), *extra]

    return [
        at("babble6", "--max-utterances", "600", "--snrs", "6", "--noise-kind", "babble"),
        # The 600 commands are one noise draw; all held-out commands under three others
        # show how far a figure moves with the draw alone.
        *[at(f"babble6_all_seed{s}", "--max-utterances", "2000", "--snrs", "6",
             "--noise-kind", "babble", "--seed", str(s)) for s in (1, 2, 3)],
        at("babble12_9", "--max-utterances", "600", "--snrs", "12,9", "--noise-kind", "babble"),
        at("cafe6", "--max-utterances", "600", "--snrs", "6", "--noise-kind", "cafe"),
        ("default_1h", [*base, "--out", str(out / "eval" / "default_1h"), "--max-utterances",
                        "100", "--snrs", "clean", "--fa-hours", "1"]),
    ]


def _run(name: str, argv: list[str], log: Path) -> float:
    t0 = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], stdout=f, stderr=subprocess.STDOUT,
                              check=False)
    if proc.returncode != 0:
        sys.exit(f"record_model: step {name} failed (rc {proc.returncode}); see {log}")
    return time.monotonic() - t0


def _summary(report: dict) -> dict:
    u, fa = report["utterance"], report["false_accepts"]
    return {"by_condition": {r["condition"]: r["accuracy"] for r in report["by_snr"]},
            "no_match": u["no_match"], "segmentation_recall": report["segmentation"]["recall"],
            "at_threshold_0": report["threshold_sweep"][0]["accuracy"],
            "false_accepts_per_hour": {k: v["per_hour"] for k, v in fa.items()},
            "latency_ms": report["latency_ms"], "utterances": u["utterances"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="work dir (resumable)")
    ap.add_argument("--rounds", type=int, nargs="+", default=list(ROUNDS), metavar="N",
                    help="members of each round of continuations after the first soup "
                         f"(default: {' '.join(map(str, ROUNDS))})")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads per step")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    if min(args.rounds) < 2:
        ap.error(f"--rounds: every round needs >= 2 members (a soup of one is that model), "
                 f"got {' '.join(map(str, args.rounds))}")
    out = args.out.resolve()
    plan = steps(out, tuple(args.rounds), args.threads)
    evals = evaluations(out, out / plan[-1][0])
    if args.dry_run:
        for _, cmd in [*plan, *evals]:
            print(" ".join(cmd))
        return 0
    (out / ".done").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(exist_ok=True)
    (out / "gate_off.yaml").write_text("vad:\n  noise_gate_db: 0.0\n")
    seconds: dict[str, float] = {}
    for name, cmd in [*plan, *[(f"eval/{n}", c) for n, c in evals]]:
        marker = out / ".done" / name.replace("/", "_")
        if marker.exists():
            continue
        if (out / name).exists():  # a step that died half way: start it again
            shutil.rmtree(out / name)
        print(f"record_model: {name} ...", file=sys.stderr, flush=True)
        seconds[name] = round(_run(name, cmd, out / f"{name.replace('/', '_')}.log"), 1)
        marker.write_text(json.dumps({"seconds": seconds[name], "argv": cmd}) + "\n")
    record = {"model": str(out / plan[-1][0]), "rounds": args.rounds,
              "evaluations": {n: _summary(json.loads((out / "eval" / n / "report.json")
                                                     .read_text())) for n, _ in evals},
              "seconds_this_run": seconds}
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| evaluation | accuracy by condition | at threshold 0 | recall | FA / h |",
             "|---|---|---|---|---|"]
    for n, s in record["evaluations"].items():
        cond = ", ".join(f"{c}: {100 * a:.1f}%" for c, a in s["by_condition"].items())
        fa = ", ".join(f"{k} {v}" for k, v in s["false_accepts_per_hour"].items())
        lines.append(f"| {n} | {cond} | {100 * s['at_threshold_0']:.1f}% | "
                     f"{s['segmentation_recall']} | {fa} |")
    (out / "record.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
