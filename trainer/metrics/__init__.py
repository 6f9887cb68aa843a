"""The project's evaluation metrics as local ``evaluate`` modules.

``evaluate.load("accuracy")`` fetches its script from the Hugging Face Hub, which the
trainer must never need. Each metric here is an ``evaluate.Metric`` subclass in its own
module file and is loaded by *path*, so evaluation works offline and cannot drift with a
Hub revision.
"""

from __future__ import annotations

import functools
from pathlib import Path

import evaluate

_DIR = Path(__file__).resolve().parent

#: metric name -> module file in this package
METRICS: dict[str, str] = {"accuracy": "accuracy.py", "macro_f1": "macro_f1.py"}


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load one of :data:`METRICS` from its local module file (never from the Hub)."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return evaluate.load(str(_DIR / METRICS[name]))


def classification_scores(
    predictions: list[int], references: list[int], num_labels: int
) -> dict[str, float]:
    """Accuracy and macro-F1 (over all ``num_labels`` classes) in one dict."""
    acc = load_metric("accuracy").compute(predictions=predictions, references=references)
    f1 = load_metric("macro_f1").compute(
        predictions=predictions, references=references, num_labels=num_labels
    )
    return {"accuracy": float(acc["accuracy"]), "macro_f1": float(f1["macro_f1"])}
