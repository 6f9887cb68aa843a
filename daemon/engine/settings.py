"""The model worker's settings and the interfaces it emits to (:mod:`.worker`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from intentd.daemon.output.events import Event, IntentEvent
from intentd.daemon.segmentation.settings import SegmentationConfig

VERDICT_RULES = ("utterance", "mean", "max")


class EventRouter(Protocol):
    def emit(self, event: Event) -> None: ...


class Recorder(Protocol):
    def submit(self, event: IntentEvent, audio: np.ndarray) -> None: ...


@dataclass(frozen=True)
class WorkerSettings:
    verdict: str = "utterance"
    threshold: float = 0.5
    top_k: int = 3
    sample_rate_hz: int = 16000  # rate of the sample indices in the items
    max_batch_windows: int = 16
    window_events: bool = False
    # Commands apart at pauses (the utterance verdict only): intentd.daemon.segmentation.
    segmentation: SegmentationConfig = field(
        default_factory=lambda: SegmentationConfig(mode="silence"))
    min_speech_samples: int = 0  # a command's speech is at least this long

    def __post_init__(self) -> None:
        if self.verdict not in VERDICT_RULES:
            raise ValueError(f"verdict must be one of {VERDICT_RULES}, got {self.verdict!r}")

    @property
    def needs_windows(self) -> bool:
        """Windows go through the model only when something uses their scores."""
        return self.verdict != "utterance" or self.window_events
