"""What the stream stages hand the model worker, through its one bounded queue.

Every item names its ``stream``; utterance state is keyed by ``(stream, utterance_id)``.
Items of one stream arrive in the order its stage made them; items of different streams
interleave freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intentd.daemon.output.events import CallInfo, Event


@dataclass(frozen=True)
class WindowItem:
    """A window of an utterance, for the ``mean``/``max`` verdicts or window events."""

    stream: str
    utterance_id: int
    start_sample: int  # window start, stream-global sample index
    window: np.ndarray  # [window_samples] float32


@dataclass(frozen=True)
class StartItem:
    """An utterance began (sent when the model segments, which needs its speech start)."""

    stream: str
    utterance_id: int
    start_sample: int  # stream-global: its audio's first sample (pre-roll)
    voiced_start_sample: int  # stream-global: its speech's first sample


@dataclass(frozen=True)
class AudioItem:
    """The next samples of an utterance, for the ``utterance`` verdict's scorer."""

    stream: str
    utterance_id: int
    samples: np.ndarray  # float32 mono
    start_sample: int = -1  # stream-global index of the first sample


@dataclass(frozen=True)
class PauseItem:
    """The utterance's speech stopped at ``voiced_end_sample`` and has been silent
    ``silent_ms`` (segmentation by the model: :mod:`intentd.daemon.segmentation.splitter`)."""

    stream: str
    utterance_id: int
    voiced_end_sample: int  # stream-global
    silent_ms: int
    heard_sample: int  # stream-global: how far the stream had been heard
    post: np.ndarray  # the post-roll after voiced_end_sample
    end_wall_time: float  # time.monotonic() when the stage saw the mark
    call: CallInfo | None = None


@dataclass(frozen=True)
class ResumeItem:
    """Speech again after a pause; a command starting here is ``part_id``."""

    stream: str
    utterance_id: int
    voiced_start_sample: int  # stream-global
    part_id: int
    pre: np.ndarray  # the pre-roll before voiced_start_sample


@dataclass(frozen=True)
class EndItem:
    """End of an utterance: the worker gives its verdict."""

    stream: str
    utterance_id: int
    start_sample: int  # first speech sample (stream-global)
    end_sample: int  # one past the last speech sample
    end_wall_time: float  # time.monotonic() when the stage saw the end of speech
    reason: str
    windows: int = 0  # windows cut from the utterance (classified or not)
    call: CallInfo | None = None  # the stream's phone call, for the verdict event
    audio_end_sample: int = -1  # one past its audio (post-roll included); -1: end_sample
    decided_sample: int = -1  # how far the stream had been heard at the end; -1: end_sample

    @property
    def audio_end(self) -> int:
        return self.audio_end_sample if self.audio_end_sample >= 0 else self.end_sample

    @property
    def decided(self) -> int:
        return self.decided_sample if self.decided_sample >= 0 else self.end_sample


@dataclass(frozen=True)
class DiscardItem:
    """The stage rejected an utterance (too short): forget it."""

    stream: str
    utterance_id: int


@dataclass(frozen=True)
class EventItem:
    """An event the stage built (speech_start / speech_end), emitted in stream order."""

    event: Event


@dataclass(frozen=True)
class StreamEnded:
    """The stream's last item: its stage has stopped (``error`` set when it failed)."""

    stream: str
    error: str | None = None


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP = _Stop()

WorkItem = (WindowItem | StartItem | AudioItem | PauseItem | ResumeItem | EndItem | DiscardItem
            | EventItem | StreamEnded | _Stop)
