"""Debug recordings (``output.save_utterances_dir``): each utterance's audio as the model
heard it (16-bit WAV at the model's rate) with its event beside it (the event's JSON line),
to diagnose a miss. Off by default; capped by file count and bytes, oldest removed first.

The worker only hands the pair over (``put_nowait`` into a bounded queue; a full queue drops
the recording, counted): a thread of its own writes and prunes, so a slow disk never delays
a verdict.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from pathlib import Path

import numpy as np

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import IntentEvent, iso_utc_ms, to_json_line

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STOP = object()


class UtteranceRecorder:
    def __init__(self, directory: str | Path, max_files: int, max_bytes: int,
                 sample_rate_hz: int, queue_items: int = 32) -> None:
        self.directory = Path(directory)
        self.max_files, self.max_bytes = max_files, max_bytes
        self.sample_rate_hz = sample_rate_hz
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_items)
        self._thread: threading.Thread | None = None
        self.saved = self.dropped = self.failed = 0

    def start(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".intentd-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"output.save_utterances_dir: cannot write to {self.directory} "
                              f"({exc.strerror}); create it or pick a writable directory"
                              ) from None
        self._thread = threading.Thread(target=self._run, name="intentd-recorder", daemon=True)
        self._thread.start()
        log.info("saving utterances to %s (at most %d files, %.0f MB)", self.directory,
                 self.max_files, self.max_bytes / 2**20)

    def submit(self, event: IntentEvent, audio: np.ndarray) -> None:
        """Called by the worker: never blocks."""
        try:
            self._queue.put_nowait((event, audio))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5.0)
            self._thread = None

    def stats(self) -> dict[str, int]:
        return {"saved": self.saved, "dropped": self.dropped, "failed": self.failed}

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            event, audio = item  # type: ignore[misc]
            try:
                self._write(event, audio)
                self._prune()
                self.saved += 1
            except OSError as exc:
                self.failed += 1
                if self.failed == 1:
                    log.warning("cannot save an utterance to %s (%s); counted from now on",
                                self.directory, exc.strerror)

    def _write(self, event: IntentEvent, audio: np.ndarray) -> None:
        import soundfile as sf

        stamp = iso_utc_ms(event.ts).replace(":", "").replace("-", "")
        stem = f"{stamp}_{_UNSAFE.sub('_', event.stream)}_{event.utterance_id:06d}"
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
        sf.write(self.directory / f"{stem}.wav", pcm, self.sample_rate_hz, subtype="PCM_16")
        (self.directory / f"{stem}.json").write_text(to_json_line(event) + "\n",
                                                     encoding="utf-8")

    def _prune(self) -> None:
        """Remove the oldest pairs (names start with the UTC time) beyond the caps."""
        wavs = sorted(self.directory.glob("*.wav"))
        sizes = {w: w.stat().st_size + _size(w.with_suffix(".json")) for w in wavs}
        total = sum(sizes.values())
        while wavs and (len(wavs) > self.max_files or total > self.max_bytes):
            oldest = wavs.pop(0)
            total -= sizes[oldest]
            oldest.unlink(missing_ok=True)
            oldest.with_suffix(".json").unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
