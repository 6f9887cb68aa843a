"""Macro-averaged F1: the unweighted mean of per-class F1 scores.

A class that appears in the references or the predictions counts (a missed or spurious
intent scores F1 = 0); classes with neither are left out, as scikit-learn's
``f1_score(average="macro")`` does for labels it never sees.
"""

from __future__ import annotations

import evaluate
import numpy as np

from intentd.trainer.metrics._info import class_id_metric_info

_DESCRIPTION = "Macro F1 = mean over classes of 2*TP / (2*TP + FP + FN)."
_KWARGS = """
Args:
    predictions (list[int]): predicted class ids.
    references (list[int]): true class ids, same length.
    num_labels (int, optional): number of classes; defaults to max id + 1.
Returns:
    macro_f1 (float): in [0, 1]; 0.0 for empty input.
"""


class MacroF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return class_id_metric_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self, predictions: list[int], references: list[int], num_labels: int | None = None
    ) -> dict[str, float]:
        p = np.asarray(predictions, dtype=np.int64)
        r = np.asarray(references, dtype=np.int64)
        if p.size == 0:
            return {"macro_f1": 0.0}
        n = int(num_labels) if num_labels else int(max(p.max(), r.max())) + 1
        scores = []
        for c in range(n):
            tp = int(np.sum((p == c) & (r == c)))
            fp = int(np.sum((p == c) & (r != c)))
            fn = int(np.sum((p != c) & (r == c)))
            if tp + fp + fn == 0:
                continue  # class absent from both: no evidence either way
            scores.append(2 * tp / (2 * tp + fp + fn))
        return {"macro_f1": float(np.mean(scores)) if scores else 0.0}
