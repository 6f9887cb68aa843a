"""Evaluation report of a fit: ``report.json`` and ``confusion_matrix.png`` in the model dir."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def confusion_matrix(
    predictions: Sequence[int], references: Sequence[int], num_labels: int
) -> list[list[int]]:
    """Counts ``[truth][prediction]`` (rows = truth) as plain ints for JSON."""
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    for p, r in zip(predictions, references, strict=True):
        cm[int(r), int(p)] += 1
    return cm.tolist()


def write_json(path: Path, report: dict[str, Any]) -> None:
    """``report`` as indented JSON, written aside and renamed: never a half-written file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` (and the confusion matrix plot, when one is in the report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    write_json(path, report)
    if report.get("confusion_matrix") and report.get("labels"):
        plot_confusion_matrix(
            report["confusion_matrix"], report["labels"], out_dir / "confusion_matrix.png",
            title=f"utterance accuracy {report.get('utterance_accuracy', 0.0):.3f}",
        )
    return path


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = ""
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on build machines or servers
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        top = cm.max() if cm.size else 0
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if cm[i, j] > top / 2 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color=color)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    log.info("wrote %s", path)


def score_windows(
    logits: np.ndarray, utt_index: np.ndarray, utt_labels: np.ndarray, num_labels: int
) -> dict[str, Any]:
    """Window and utterance scores from per-window logits.

    ``utt_index[i]`` is the utterance of window ``i``; an utterance's probabilities are the
    mean of its windows' softmax probabilities (the daemon's ``mean`` verdict). With one
    item per utterance, window and utterance accuracy coincide.
    """
    from intentd.trainer.metrics import classification_scores

    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    n_utt = len(utt_labels)
    utt_probs = np.zeros((n_utt, num_labels), dtype=np.float64)
    np.add.at(utt_probs, utt_index, probs)
    utt_pred = utt_probs.argmax(axis=1)
    win_pred = probs.argmax(axis=1)
    win_truth = utt_labels[utt_index]
    utt_scores = classification_scores(utt_pred.tolist(), utt_labels.tolist(), num_labels)
    win_scores = classification_scores(win_pred.tolist(), win_truth.tolist(), num_labels)
    return {
        "utterance_accuracy": utt_scores["accuracy"],
        "macro_f1": utt_scores["macro_f1"],
        "window_accuracy": win_scores["accuracy"],
        "window_macro_f1": win_scores["macro_f1"],
        "utterance_predictions": utt_pred.tolist(),
    }
