"""What every metric here declares to ``evaluate``: integer class-id inputs."""

from __future__ import annotations

import datasets
import evaluate


def class_id_metric_info(description: str, inputs_description: str) -> evaluate.MetricInfo:
    """MetricInfo for a metric over ``predictions`` / ``references`` given as class ids."""
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description=inputs_description,
        features=datasets.Features(
            {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        ),
    )
