"""Model ensembles: several models over the same labels, their probabilities averaged.

An ensemble is itself a model dir, so ``intentd``, ``intentd-eval`` and a config's
``model.path`` take it like any other: its ``config.json`` holds
``"model_type": "intentd-ensemble"`` and ``members``, the member model dirs as paths relative
to the ensemble's own (``intentd-train ensemble`` copies them in, so the dir moves as one).
Every member runs on every window and utterance, so N members cost N times the compute of
one; what that buys is in docs/results.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError
from intentd.daemon.model.backend import ModelBackend, UtteranceScorer

MODEL_TYPE = "intentd-ensemble"
MEMBERS_SUBDIR = "members"


def _mean(probs: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack(probs), axis=0, dtype=np.float64).astype(np.float32)


class EnsembleScorer:
    """One utterance scorer per member, fed the same audio."""

    def __init__(self, scorers: Sequence[UtteranceScorer]) -> None:
        self._scorers = tuple(scorers)

    def push(self, samples: np.ndarray) -> None:
        for scorer in self._scorers:
            scorer.push(samples)

    def result(self) -> np.ndarray:
        return _mean([scorer.result() for scorer in self._scorers])


class EnsembleBackend:
    """The mean of its members' probabilities, window by window and utterance by utterance.
    Averaging keeps each member's calibration meaning: a threshold stays a probability."""

    def __init__(self, members: Sequence[ModelBackend], name: str) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0]
        for member in members[1:]:
            if tuple(member.labels) != tuple(first.labels):
                raise DataError(f"ensemble {name}: member {member.name} has labels "
                                f"{list(member.labels)}, member {first.name} "
                                f"{list(first.labels)}; members must share one label map, "
                                "in the same order (models fit on the same data)")
            if member.sample_rate_hz != first.sample_rate_hz:
                raise DataError(f"ensemble {name}: member {member.name} takes "
                                f"{member.sample_rate_hz} Hz, member {first.name} "
                                f"{first.sample_rate_hz} Hz; members must take one rate")
        self.members = tuple(members)
        self.name = name
        self.labels = tuple(first.labels)
        self.sample_rate_hz = first.sample_rate_hz
        self.streams_audio = any(getattr(m, "streams_audio", True) for m in members)

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        return _mean([member.classify_windows(windows) for member in self.members])

    def utterance_scorer(self) -> EnsembleScorer:
        return EnsembleScorer([member.utterance_scorer() for member in self.members])


def member_dirs(path: Path, config: dict[str, Any]) -> list[Path]:
    """The member dirs an ensemble's ``config`` names, checked to be there."""
    members = config.get("members")
    if (not isinstance(members, list) or len(members) < 2
            or not all(isinstance(m, str) and m for m in members)):
        raise DataError(f"{path / 'config.json'}: \"members\" must list at least 2 member "
                        f"model dirs, got {members!r}; rebuild it with intentd-train ensemble")
    dirs = [path / m for m in members]
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"ensemble {path}: member dir {d} is missing; copy the whole "
                            "ensemble dir, or rebuild it with intentd-train ensemble")
    return dirs


def load(path: Path, config: dict[str, Any], threads: int,
         load_member: Callable[[Path, int], ModelBackend]) -> EnsembleBackend:
    """The ensemble at ``path`` (its parsed ``config``), each member by ``load_member``."""
    members = []
    for d in member_dirs(path, config):
        if _model_type(d) == MODEL_TYPE:
            raise DataError(f"ensemble {path}: member {d} is itself an ensemble; list its "
                            "members instead")
        members.append(load_member(d, threads))
    return EnsembleBackend(members, path.resolve().name)


def _model_type(path: Path) -> object:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None  # the member's own load reports what is wrong with it
