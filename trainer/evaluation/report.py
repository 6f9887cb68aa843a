"""Write an evaluation report: ``report.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.pyplot as plt

from intentd.trainer.fitting.report import write_json

SNR_PLOT = "accuracy_vs_snr.png"
SWEEP_PLOT = "threshold_sweep.png"


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def _ms(x: Any) -> str:
    return "-" if x is None else f"{x:.0f} ms"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    u, seg, lat = r["utterance"], r["segmentation"], r["latency_ms"]
    cmd = r.get("commands", {})
    # Truth with slots adds command acceptance (intent and every slot exact) and per-slot
    # accuracy.
    car_h = ["command acceptance"] if "command_acceptance" in u else []

    def car(row: dict[str, Any]) -> list[Any]:
        return [row.get("command_acceptance")] if car_h else []

    slot_lines = []
    if car_h:
        names = sorted({k for row in r["by_snr"] for k in row.get("slot_accuracy", {})})
        slot_lines = ["## Slot accuracy by condition", "",
                      "Share of the commands that say a slot whose event reports its value.",
                      "",
                      *_table(["condition", *names],
                              [[row["condition"], *[row["slot_accuracy"].get(k) for k in names]]
                               for row in r["by_snr"]])]
    lines = [f"# intentd-eval: {r['model']}", "",
             f"{r['streams']['utterances']} utterances in {r['streams']['count']} streams "
             f"({r['streams']['seconds']:.0f} s), labels: {', '.join(r['labels'])}; "
             f"threshold {s['operating_threshold']}, verdict {s['verdict']}, "
             f"noise {'files' if s['noise_files'] else s['noise_kind']}, "
             f"telephone {'yes (8 kHz μ-law)' if s['telephone'] else 'no'}, seed {s['seed']}.",
             "", f"## Headline ({s['headline_condition']})", "",
             *_table(["accuracy", *car_h, "macro-F1", "missed", "no_match",
                      "spurious intents"],
                     [[u["accuracy"], *car(u), u["macro_f1"], u["missed"], u["no_match"],
                       u["spurious_intents"]]]),
             *slot_lines,
             "## Accuracy by SNR", "",
             "SNR = 10·log10(max 20 ms frame energy of speech / of noise) (Rhino benchmark).",
             "",
             *_table(["condition", "accuracy", *car_h, "macro-F1", "missed", "seg. recall",
                      "seg. precision", "one-to-one"],
                     [[row["condition"], row["accuracy"], *car(row), row["macro_f1"],
                       row["missed"], row["segmentation_recall"],
                       row["segmentation_precision"], row.get("one_to_one")]
                      for row in r["by_snr"]]),
             "## Segmentation", "",
             f"Segmentation {s.get('segmentation', {}).get('mode', 'silence')}. One-to-one: "
             "each command exactly one event. Stop to decision: the speaker's last word to "
             "the verdict's decision in stream time (the model's own time comes on top live).",
             "",
             *_table(["truth spans", "events", "matched", "recall", "precision", "one-to-one",
                      "boundary error p90", "stop to decision p50 / p95", "answered early"],
                     [[seg["truth_spans"], seg["events"], seg["matched"], seg["recall"],
                       seg["precision"], cmd.get("one_to_one"),
                       _ms(cmd.get("boundary_error_ms_p90")),
                       f"{_ms(cmd.get('stop_to_decision_ms_p50'))} / "
                       f"{_ms(cmd.get('stop_to_decision_ms_p95'))}",
                       cmd.get("early_share")]]),
             "## False accepts per hour", ""]
    fa = r["false_accepts"]
    lines += _table(["stream", "hours", "events", "false accepts", "FA/h"],
                    [[k, v["hours"], v["events"], v["false_accepts"], v["per_hour"]]
                     for k, v in fa.items()]) if fa else ["(not run: --fa-hours 0)", ""]
    lines += ["## Latency (end of speech → event, processing only)", "",
              *_table(["events", "p50 ms", "p95 ms", "max ms"],
                      [[lat["events"], lat["p50_ms"], lat["p95_ms"], lat["max_ms"]]]),
              "## Threshold sweep", ""]
    sweep = r["threshold_sweep"]
    fa_cols = [k for k in sweep[0] if k.startswith("fa_per_hour_")]
    conds = [c for c in sweep[0].get("accuracy_by_condition", {})
             if c != s["headline_condition"]]
    if conds:
        lines += ["Accuracy in the other conditions: in noise more of the right answers score "
                  "low, so a lower threshold can pay there.", ""]
    lines += _table(["threshold", "accuracy", "macro-F1", *[f"acc. {c}" for c in conds],
                     *[c.replace("fa_per_hour_", "FA/h ") for c in fa_cols]],
                    [[row["threshold"], row["accuracy"], row["macro_f1"],
                      *[row["accuracy_by_condition"][c] for c in conds],
                      *[row[c] for c in fa_cols]] for row in sweep])
    cm = r["confusion_matrix"]
    lines += ["## Confusion matrix (rows: truth)", "",
              *_table(["truth", *cm["columns"]],
                      [[lab, *row] for lab, row in zip(cm["rows"], cm["counts"], strict=True)]),
              f"Run: {r['timing']['audio_s']:.0f} s of audio in {r['timing']['wall_s']:.0f} s "
              f"({r['timing']['x_realtime']}x real time).", ""]
    return "\n".join(lines)


def plot_snr(r: dict[str, Any], path: Path) -> None:
    rows = r["by_snr"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(rows)), [row["accuracy"] or 0.0 for row in rows], "o-", label="accuracy")
    ax.plot(range(len(rows)), [row["macro_f1"] for row in rows], "s--", label="macro-F1")
    ax.set_xticks(range(len(rows)), [str(row["condition"]) for row in rows])
    ax.set_xlabel("SNR (dB, max frame energy)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{r['model']}: accuracy vs SNR")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(r: dict[str, Any], path: Path) -> None:
    rows = r["threshold_sweep"]
    t = [row["threshold"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    headline = r["settings"]["headline_condition"]

    def label(cond: str) -> str:
        return f"accuracy {cond}" + (" dB" if cond.isdigit() else "")

    ax.plot(t, [row["accuracy"] or 0.0 for row in rows], "o-", label=label(headline))
    for c in rows[0].get("accuracy_by_condition", {}):
        if c != headline:
            ax.plot(t, [row["accuracy_by_condition"][c] or 0.0 for row in rows], "-",
                    linewidth=1, alpha=0.7, label=label(c))
    ax.set_xlabel("threshold")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fa_cols = [k for k in rows[0] if k.startswith("fa_per_hour_")]
    if fa_cols:
        ax2 = ax.twinx()
        for c, style in zip(fa_cols, ("r^--", "kv:"), strict=False):
            ax2.plot(t, [row[c] or 0.0 for row in rows], style, label=c.replace("_", " "))
        ax2.set_ylabel("false accepts per hour")
        ax2.legend(loc="upper center")
    ax.legend(loc="lower left")
    ax.set_title(f"{r['model']}: threshold sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    plot_snr(report, out_dir / SNR_PLOT)
    plot_sweep(report, out_dir / SWEEP_PLOT)
