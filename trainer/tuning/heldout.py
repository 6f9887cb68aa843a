"""Held-out accuracy of a model built outside ``fit`` (tuned, souped), and its calibration.

``fit`` splits its data (seeded) and measures on the held-out part; the commands that build
on its models (``tune-encoder``, ``soup``) split the same data the same way, so they never
train on, or select with, utterances the model was measured on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def fit_split(model_dir: Path) -> tuple[int, float]:
    """The seed and test fraction ``fit`` split the data with (its defaults for models saved
    before the report kept them), so tuning never trains on the held-out utterances."""
    try:
        split = json.loads((model_dir / "report.json").read_text(encoding="utf-8"))["split"]
        return int(split["seed"]), float(split["test_fraction"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s/report.json does not say how fit split the data; assuming fit's "
                    "defaults (--seed 42, --test-fraction 0.2)", model_dir)
        return 42, 0.2


def load_with_labels(data: str, split: tuple[int, float], id2label: dict[str, str],
                     source: Path, fix: str) -> tuple[Any, list[str]]:
    """``data`` split as ``fit`` split it, and the model's labels in class-id order; the
    data must hold exactly those labels (``fix`` says what to pass instead)."""
    from intentd.daemon.errors import ConfigError, DataError
    from intentd.trainer.fitting.data import load_data

    try:
        labels = [id2label[str(i)] for i in range(len(id2label))]
    except KeyError as err:
        raise DataError(f"{source}: id2label must name every class id 0..n-1") from err
    seed, fraction = split
    dataset = load_data(data, seed=seed, test_fraction=fraction)
    if sorted(labels) != sorted(dataset.labels):
        raise ConfigError(f"{data}: its labels {sorted(dataset.labels)} differ from the "
                          f"model's {sorted(labels)}; {fix}")
    return dataset, labels


def logits(head: Any, extractor: Any, examples: list[Any]) -> np.ndarray:
    """``[n, classes]`` logits of ``examples`` through the model's own feature extractor
    (the daemon's CTranslate2 path for a Whisper front-end, tuned weights included)."""
    import torch

    from intentd.trainer.fitting.data import load_audio

    out = []
    for i in range(0, len(examples), 32):
        batch = extractor([load_audio(ex, 16000) for ex in examples[i : i + 32]],
                          sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            out.append(head(**batch).logits.numpy())
    return np.concatenate(out)


def measure(head: Any, extractor: Any, dataset: Any, labels: list[str],
            who: str = "tune-encoder", calibrate: bool = True) -> dict[str, Any]:
    """Accuracy on the test and noisy splits; with ``calibrate`` the score temperature is
    re-fitted on both (sets ``head.config.score_temperature``)."""
    from intentd.trainer.fitting.calibrate import fit_temperature

    label_id = {lab: i for i, lab in enumerate(labels)}
    result: dict[str, Any] = {}
    all_logits, all_y = [], []
    for name, examples in (("test", list(dataset.test)), ("noisy", list(dataset.noisy))):
        if not examples:
            continue
        z = logits(head, extractor, examples)
        y = np.array([label_id[ex.label] for ex in examples])
        result[f"{name}_accuracy"] = round(float(np.mean(z.argmax(axis=1) == y)), 4)
        all_logits.append(z)
        all_y.append(y)
        log.info("%s: %s split accuracy %.4f (%d utterances)", who, name,
                 result[f"{name}_accuracy"], len(examples))
    if all_logits:
        y = np.concatenate(all_y)
        z = np.concatenate(all_logits)
        result["held_out_accuracy"] = round(float(np.mean(z.argmax(axis=1) == y)), 4)
        if calibrate:
            cal = fit_temperature(z, y)
            head.config.score_temperature = cal.temperature
            result["calibration"] = cal.as_report()
    return result
