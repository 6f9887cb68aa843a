"""The ``segmentation:`` settings (:mod:`intentd.daemon.segmentation.splitter`). Light: the
config imports it; config.yaml documents each key."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("model", "silence")
# How a command's event was ended (the event's "end"): the VAD's hangover ran out, a
# confident command was answered at a pause, the part after a pause was another command,
# the utterance reached vad.max_utterance_s, or the input ended.
END_REASONS = ("silence", "early", "split", "max_length", "eof")


@dataclass(frozen=True)
class SegmentationConfig:
    mode: str = "model"  # model | silence
    early_after_ms: int = 400  # pause after which a confident complete command is answered
    # (0: never early, the hangover ends every command)
    early_score: float = 0.9  # its probability must reach this
    split_score: float = 0.8  # each part's probability at a pause, for a split

    @property
    def by_model(self) -> bool:
        return self.mode == "model"

    @property
    def early(self) -> bool:
        return self.by_model and self.early_after_ms > 0

    def pause_marks_ms(self, min_pause_ms: int) -> tuple[int, ...]:
        """The silences at which the segmenter reports a pause to the model."""
        if not self.by_model:
            return ()
        return tuple(sorted({min_pause_ms, *((self.early_after_ms,) if self.early else ())}))

    def problem(self, min_pause_ms: int, min_silence_ms: int, frame_ms: int
                ) -> tuple[str, int, str] | None:
        """(key, value, what is allowed) when the VAD settings leave no room for it."""
        if not self.by_model:
            return None
        if not frame_ms <= min_pause_ms < min_silence_ms:
            return ("vad.min_pause_ms", min_pause_ms, f"from vad.frame_ms ({frame_ms}) to "
                    f"below vad.min_silence_ms ({min_silence_ms}) when segmentation.mode is "
                    "model")
        if self.early and not min_pause_ms <= self.early_after_ms < min_silence_ms:
            return ("segmentation.early_after_ms", self.early_after_ms, "0 (no early answers) "
                    f"or from vad.min_pause_ms ({min_pause_ms}) to below vad.min_silence_ms "
                    f"({min_silence_ms})")
        return None
