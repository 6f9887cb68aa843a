"""One input stream's stage: its own thread reads the source, resamples, segments and cuts.

::

    source.read() → StreamResampler → Segmenter (VAD, noise gate) → WindowCutter per utterance
                  ──► the engine's work queue (bounded, shared by every stream)

The stage owns all of this state; nothing of it is shared with other threads. It hands
the worker only what the verdict needs: utterance audio for the ``utterance`` verdict,
windows for ``mean``/``max`` or window events (otherwise windows are only counted).

Backpressure: the hand-over to the work queue blocks, so files and stdin never lose audio
(a slow model makes a file run slower); a microphone's own capture queue drops and counts
what the stage could not take in time.

Ending: at the end of input, on :meth:`request_stop` or on a failure, the open utterance is
finished (segmenter flushed, what was heard sent for a verdict) and :class:`StreamEnded` is
the stream's last item. A failure ends this stream alone, with one log line.

Settings change (:meth:`reconfigure`) between utterances only: the new VAD and windows
take over the first time the stage has no utterance open, so no utterance is judged half
by one rule and half by another.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentd.daemon.audio.resample import StreamResampler
from intentd.daemon.audio.segmenter import (
    Discarded,
    Pause,
    Resume,
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from intentd.daemon.audio.sources import AudioSource
from intentd.daemon.audio.vad import VAD_RATES_HZ
from intentd.daemon.audio.windowing import WindowCutter, WindowSpec
from intentd.daemon.config import VadConfig
from intentd.daemon.engine.handover import put_unless
from intentd.daemon.engine.items import (
    AudioItem,
    DiscardItem,
    EndItem,
    EventItem,
    PauseItem,
    ResumeItem,
    StartItem,
    StreamEnded,
    WindowItem,
)
from intentd.daemon.errors import ConfigError, IntentdError
from intentd.daemon.output.events import CallInfo, SpeechEndEvent, SpeechStartEvent

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1
PUT_POLL_S = 0.2
# Between utterances a live stream lets this much audio pile up in its source and reads it in
# one go: 4 wake-ups a second instead of one per 20-100 ms block. Waking is what silence
# costs (a thread woken from sleep runs its first few hundred microseconds of Python and
# numpy several times slower than a warm one): an idle stream took 2.4% of a core, 0.9% at
# 0.12 s; and every wake-up of a hundred call streams competes for the GIL with the model
# worker (bench/run.py f: 88 real-time streams at 0.12 s, 120 at 0.25 s). Speech is noticed
# at most this much later in wall time (its timestamps are unchanged); once an utterance is
# open every block is read as it comes, so the end of speech is seen without delay. A source
# that delivered more than twice that in one wait is ahead of real time (a client sending a
# recording at full speed, a device with no clock): it is read without waiting until it has
# caught up.
IDLE_BATCH_S = 0.25
# Whatever else the source already holds is read with each block, up to this much audio:
# a stream that fell behind (a busy machine, many streams) catches up in a few large steps,
# each sample costing less, instead of one block per wake-up.
DRAIN_MAX_S = 1.0


@dataclass(frozen=True)
class StreamSettings:
    """What a stream stage needs to know; derived from the config by the engine."""

    vad: VadConfig
    windows: WindowSpec
    send_audio: bool  # the utterance verdict scores the audio itself
    send_windows: bool  # windows go to the model (mean/max verdict, window events)
    speech_events: bool = False
    audio_at_end: bool = False  # send it in one piece at the end (model.streams_audio False)
    # Segmentation by the model: report the pauses of an utterance at these silences (ms).
    pause_marks_ms: tuple[int, ...] = ()


class _Open:
    def __init__(self, start_sample: int, voiced_start: int, cutter: WindowCutter) -> None:
        self.start_sample = start_sample
        self.voiced_start = voiced_start
        self.cutter = cutter
        # Its audio (stream sample, samples), when it goes to the worker at the end.
        self.pieces: list[tuple[int, np.ndarray]] = []


class StreamStage:
    """Thread target for one input: ``threading.Thread(target=stage.run)``."""

    def __init__(self, name: str, source: AudioSource, settings: StreamSettings,
                 rate_hz: int, out: queue.Queue[Any], abort: threading.Event,
                 call: CallInfo | None = None) -> None:
        if rate_hz not in VAD_RATES_HZ:
            raise ConfigError(f"the model's sample rate {rate_hz} Hz is not one the VAD "
                              f"supports ({', '.join(map(str, VAD_RATES_HZ))})")
        self.name = name
        self.source = source
        self.call = call  # a phone call's track: its events carry the call's ids
        self.rate_hz = rate_hz
        self.out = out
        self.abort = abort  # set by the engine: give up blocked hand-overs now
        self._stop = threading.Event()
        self._settings = settings
        self._pending: StreamSettings | None = None
        self._lock = threading.Lock()
        self.resampler = StreamResampler(source.sample_rate_hz, rate_hz, source.channels)
        self.segmenter = Segmenter(settings.vad, rate_hz, pause_marks_ms=settings.pause_marks_ms)
        self._open: dict[int, _Open] = {}
        # A reconfigured segmenter counts samples and utterances from zero: these keep stream
        # time and utterance ids going. Ids: one per utterance the segmenter starts and one
        # per pause inside it (a command may start there), unique and increasing per stream.
        self._offset = 0
        self._next_uid = 0
        self._uids: dict[int, int] = {}  # the segmenter's index of an open utterance -> id
        self.heartbeat = time.monotonic()
        self.error: str | None = None
        self.failure: BaseException | None = None
        self.state = "new"  # new | running | ended | failed
        self.counts = {"utterances": 0, "discarded": 0, "max_length_splits": 0,
                       "windows": 0, "samples_in": 0, "nonfinite_samples": 0}
        self._pause_cuts = 0
        self._pause_cut_samples = 0
        self._drain_max = int(DRAIN_MAX_S * source.sample_rate_hz)

    # --- control (any thread) -------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def reconfigure(self, settings: StreamSettings) -> None:
        """Take ``settings`` at the next moment no utterance is open."""
        with self._lock:
            self._pending = settings

    @property
    def settings(self) -> StreamSettings:
        return self._settings

    # --- the thread -----------------------------------------------------------------

    def run(self) -> None:
        self.state = "running"
        try:
            try:
                self._loop()
            finally:
                with contextlib.suppress(Exception):
                    self.source.stop()
            # End of input or a stop request: finish what was heard.
            self._finish_utterance()
        except Exception as exc:
            self.error = str(exc) if isinstance(exc, IntentdError) else f"{exc!r}"
            if isinstance(exc, IntentdError):
                log.error("stream %s: %s; this stream ends", self.name, self.error)
            else:
                log.exception("stream %s crashed; this stream ends", self.name)
            self.failure = exc
            # What was already heard still gets its verdict (unless the stage itself broke).
            with contextlib.suppress(Exception):
                self._finish_utterance()
        self.state = "failed" if self.error else "ended"
        self._put(StreamEnded(self.name, self.error))

    def _loop(self) -> None:
        live = bool(getattr(self.source, "live", False))
        ahead = int(2 * IDLE_BATCH_S * self.source.sample_rate_hz)  # samples
        behind = False
        while not self._stop.is_set() and not self.abort.is_set():
            self.heartbeat = time.monotonic()
            idle = live and not self._open and not self.segmenter.machine.in_speech
            if idle and not behind:
                self._stop.wait(IDLE_BATCH_S)
                block = self._drain(self.source.read(0.0))
                behind = block is not None and block.shape[0] > ahead
            else:
                block = self._drain(self.source.read(0.0 if behind else READ_TIMEOUT_S))
                behind = behind and block is not None and block.shape[0] > 0
            if block is None:
                log.info("stream %s: end of input", self.name)
                return
            self._maybe_reconfigure()  # before what was read: it gets the new settings
            if block.shape[0]:
                self.counts["samples_in"] += int(block.shape[0])
                block = self._finite(block)
                self._handle(self.segmenter.process(self.resampler.process(block)))

    def _drain(self, first: np.ndarray | None) -> np.ndarray | None:
        """``first`` and the blocks the source holds now, up to ``DRAIN_MAX_S`` of audio,
        as one block (None: the source ended before ``first``)."""
        if first is None or not first.shape[0]:
            return first
        blocks, n = [first], first.shape[0]
        while n < self._drain_max:
            block = self.source.read(0.0)
            if block is None or not block.shape[0]:
                break  # an end is read again next time, after these are processed
            blocks.append(block)
            n += block.shape[0]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _finite(self, block: np.ndarray) -> np.ndarray:
        """``block`` with NaN and infinite samples (a float file can hold them) read as
        silence: one would poison the resampler's and the noise gate's running state, and
        with them every later verdict of the stream."""
        bad = ~np.isfinite(block)
        if not bad.any():
            return block
        if not self.counts["nonfinite_samples"]:
            log.warning("stream %s: the audio holds NaN or infinite samples; they are read as "
                        "silence (counted in the stream's nonfinite_samples)", self.name)
        self.counts["nonfinite_samples"] += int(bad.sum())
        return np.where(bad, 0.0, block).astype(block.dtype, copy=False)

    def _finish_utterance(self) -> None:
        self._handle(self.segmenter.process(self.resampler.flush()))
        self._handle(self.segmenter.flush())

    def _maybe_reconfigure(self) -> None:
        if self._pending is None or self._open or self.segmenter.machine.in_speech:
            return
        with self._lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        if (new.vad, new.pause_marks_ms) == (self._settings.vad, self._settings.pause_marks_ms):
            # the segmenter (and its noise floor) stays
            self._settings = new
            return
        samples = self.segmenter.samples_seen
        self._pause_cuts += self.segmenter.pause_cuts
        self._pause_cut_samples += self.segmenter.pause_cut_samples
        self._offset += samples
        self._uids.clear()
        self.segmenter = Segmenter(new.vad, self.rate_hz, pause_marks_ms=new.pause_marks_ms)
        self._settings = new
        log.info("stream %s: new settings in effect", self.name)

    # --- hand-over ------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        put_unless(self.out, item, self.abort, poll_s=PUT_POLL_S)

    def _uid(self, ev: Any) -> int:
        if isinstance(ev, UtteranceStart):
            self._uids[ev.index] = self._next_uid
            self._next_uid += 1
        uid = self._uids[ev.index]
        if isinstance(ev, UtteranceEnd | Discarded):
            del self._uids[ev.index]
        return uid

    def _send_pieces(self, uid: int, utt: _Open) -> None:
        """The audio collected for the end, one item per stretch without a cut."""
        runs: list[tuple[int, list[np.ndarray]]] = []
        for start, samples in utt.pieces:
            if runs and runs[-1][0] + sum(x.shape[0] for x in runs[-1][1]) == start:
                runs[-1][1].append(samples)
            else:
                runs.append((start, [samples]))
        utt.pieces.clear()
        for start, parts in runs:
            self._put(AudioItem(self.name, uid, parts[0] if len(parts) == 1
                                else np.concatenate(parts), start))

    def _handle(self, events: list[Any]) -> None:
        s = self._settings
        off = self._offset
        for ev in events:
            uid = self._uid(ev)
            if isinstance(ev, UtteranceStart):
                voiced = ev.voiced_start_sample if ev.voiced_start_sample >= 0 else ev.start_sample
                self._open[uid] = _Open(off + ev.start_sample, off + voiced,
                                        WindowCutter(s.windows))
                if s.pause_marks_ms:
                    self._put(StartItem(self.name, uid, off + ev.start_sample, off + voiced))
                if s.speech_events:
                    self._put(EventItem(SpeechStartEvent(
                        uid, self.name, (off + voiced) / self.rate_hz, time.time(), self.call)))
            elif isinstance(ev, UtteranceAudio):
                utt = self._open[uid]
                self._windows(uid, utt, utt.cutter.push(ev.samples))
                if s.send_audio and s.audio_at_end:
                    utt.pieces.append((off + ev.start_sample, ev.samples))
                elif s.send_audio:
                    self._put(AudioItem(self.name, uid, ev.samples, off + ev.start_sample))
            elif isinstance(ev, Pause):
                utt = self._open[uid]
                self._send_pieces(uid, utt)
                self._put(PauseItem(self.name, uid, off + ev.voiced_end_sample, ev.silent_ms,
                                    off + ev.heard_sample, ev.post, time.monotonic(),
                                    self.call))
            elif isinstance(ev, Resume):
                self._put(ResumeItem(self.name, uid, off + ev.voiced_start_sample,
                                     self._next_uid, ev.pre))
                self._next_uid += 1
            elif isinstance(ev, UtteranceEnd):
                seen = time.monotonic()
                utt = self._open.pop(uid)
                self._windows(uid, utt, utt.cutter.finish())
                self._send_pieces(uid, utt)
                start, end = utt.start_sample, off + ev.end_sample
                if 0 <= ev.voiced_start_sample < ev.voiced_end_sample:
                    start, end = off + ev.voiced_start_sample, off + ev.voiced_end_sample
                self.counts["utterances"] += 1
                self.counts["max_length_splits"] += ev.reason == "max_length"
                if s.speech_events:
                    self._put(EventItem(SpeechEndEvent(uid, self.name, end / self.rate_hz,
                                                       time.time(), self.call)))
                decided = off + ev.decided_sample if ev.decided_sample >= 0 else -1
                self._put(EndItem(self.name, uid, start, end, seen, ev.reason,
                                  utt.cutter.windows_emitted, self.call,
                                  off + ev.end_sample, decided))
            elif isinstance(ev, Discarded):
                utt = self._open.pop(uid)
                end = (off + ev.voiced_end_sample if ev.voiced_end_sample >= 0
                       else utt.voiced_start)
                self.counts["discarded"] += 1
                self._put(DiscardItem(self.name, uid))
                if s.speech_events:
                    self._put(EventItem(SpeechEndEvent(uid, self.name, end / self.rate_hz,
                                                       time.time(), self.call)))

    def _windows(self, uid: int, utt: _Open, pairs: list[tuple[int, np.ndarray]]) -> None:
        self.counts["windows"] += len(pairs)
        if not self._settings.send_windows:
            return
        for start, window in pairs:
            self._put(WindowItem(self.name, uid, utt.start_sample + start, window))

    # --- figures --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        seg = self.segmenter
        cut = self._pause_cut_samples + seg.pause_cut_samples
        return {"stream": self.name, "state": self.state, "source": self.source.name,
                **self.counts, "pauses_shortened": self._pause_cuts + seg.pause_cuts,
                "pause_s_cut": round(cut / self.rate_hz, 3),
                "source_stats": self.source.stats()}
