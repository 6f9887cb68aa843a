"""Accuracy: the fraction of predictions equal to their reference label."""

from __future__ import annotations

import evaluate
import numpy as np

from intentd.trainer.metrics._info import class_id_metric_info

_DESCRIPTION = "Accuracy = (number of correct predictions) / (number of predictions)."
_KWARGS = """
Args:
    predictions (list[int]): predicted class ids.
    references (list[int]): true class ids, same length.
Returns:
    accuracy (float): in [0, 1]; 0.0 for empty input.
"""


class Accuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return class_id_metric_info(_DESCRIPTION, _KWARGS)

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        p = np.asarray(predictions, dtype=np.int64)
        r = np.asarray(references, dtype=np.int64)
        if p.size == 0:
            return {"accuracy": 0.0}
        return {"accuracy": float(np.mean(p == r))}
