"""Temperature scaling: make a model's scores honest probabilities of being right.

Label smoothing and weight decay keep the compact head under-confident: on banking, a
prediction scored 0.45 is right far more often than 45% of the time, so the daemon's
``threshold`` (what users tune) rejected many correct intents. One scalar ``T`` fitted on
held-out utterances (Guo et al., "On Calibration of Modern Neural Networks", 2017) divides
the logits before the softmax: the ranking, hence accuracy, is unchanged; only the scores
move. ``fit`` stores ``T`` in the model config as ``score_temperature``; the daemon's
backends apply it (``intentd.daemon.model.loader``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Outside this range a fit means degenerate held-out data (all right, or near chance),
# not a real calibration; clamping keeps scores usable either way.
T_MIN, T_MAX = 0.2, 5.0
_ECE_BINS = 10


@dataclass(frozen=True)
class Calibration:
    temperature: float
    items: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def as_report(self) -> dict[str, float | int]:
        return {
            "score_temperature": round(self.temperature, 4),
            "calibration_items": self.items,
            "nll_before": round(self.nll_before, 4), "nll_after": round(self.nll_after, 4),
            "ece_before": round(self.ece_before, 4), "ece_after": round(self.ece_after, 4),
        }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(axis=1, keepdims=True)
    log_norm = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = _ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """The ``T`` in [T_MIN, T_MAX] minimising the negative log-likelihood of ``labels``.

    The NLL is convex in the inverse temperature, so a ternary search on ``1/T`` finds the
    optimum to 1e-6 without an optimiser dependency.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[0] != y.shape[0]:
        raise ValueError(f"need [n, classes] logits and n labels, got {z.shape} and {y.shape}")
    lo, hi = 1.0 / T_MAX, 1.0 / T_MIN
    while hi - lo > 1e-6:
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if nll(z, y, 1.0 / a) <= nll(z, y, 1.0 / b):
            hi = b
        else:
            lo = a
    t = 1.0 / ((lo + hi) / 2)
    return Calibration(
        temperature=t, items=len(y),
        nll_before=nll(z, y, 1.0), nll_after=nll(z, y, t),
        ece_before=expected_calibration_error(softmax(z), y),
        ece_after=expected_calibration_error(softmax(z, t), y),
    )
