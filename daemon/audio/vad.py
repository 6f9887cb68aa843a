"""Voice activity segmentation: audio stream -> utterances.

Two layers:

* :class:`VadStateMachine` is pure and frame-level (no audio): it is fed per frame a
  ``is_speech`` flag (strong evidence) and optionally a ``weak`` one, and says where
  utterances start and end, in frame indices.
* :class:`.segmenter.Segmenter` frames 16 kHz mono float32 audio, runs webrtcvad per
  frame (graded by the noise gate, :mod:`.noise_gate`), drives the state machine and
  emits the audio of each utterance (pre-roll included).

State machine semantics (all durations are converted to frames with
``ceil(ms / frame_ms)``; frame ``i`` covers samples ``[i*F, (i+1)*F)``; a frame is voiced
if strong, or weak and attached as below; without ``weak``, voiced = strong):

* Idle: a ring holds the strong flags of the last ``trigger_window_ms``. Speech starts when
  at least ``trigger_ratio`` of the ring is strong (frames not yet seen count as not).
  The onset (first voiced frame) is the first strong frame in the ring; gated only, it moves
  back over the weak frames leading into it, across gaps of at most ``BRIDGE_MS`` without
  one, at most ``REACH_MS`` back. ``start = onset - speech_pad_ms``; neither goes before the
  previous utterance's end, the start not before frame 0.
* Speech: only strong frames keep the utterance open: it ends once ``min_silence_ms`` of
  consecutive non-strong frames have passed (the hangover), so a pause shorter than that
  stays inside. A weak frame (gated) still extends the voiced span if it lies at most
  ``BRIDGE_MS`` after the last voiced frame and ``REACH_MS`` after the last strong one (a
  soft word tail). ``end = last voiced frame + 1 + speech_pad_ms``, capped at the frame
  where the hangover ended. Reason ``"silence"``.
* An utterance reaching ``max_utterance_s`` (pre-roll included) is force-split there
  (reason ``"max_length"``); if the frame at the split is voiced, the next utterance starts
  right at the split (no pre-roll: it would overlap), else the machine goes idle.
* End of stream (:meth:`VadStateMachine.flush`) ends an open utterance with reason
  ``"eof"`` at ``min(last voiced + 1 + pad, frames seen)``.
* An utterance whose voiced span (first voiced frame to last voiced frame, inclusive) is
  shorter than ``min_speech_ms`` (clicks, coughs) is not ended but discarded: since its
  start was already reported, a ``"discard"`` event is emitted instead of ``"end"``.
  Utterance indices count every start, discarded ones included.

Defaults and the trade-off they make: real speakers pause. On 619 crowd-sourced spoken
commands the median command holds 3.5 s of speech (p90 6.4 s) and 16% contain an internal
pause of >= 800 ms. Such a command must stay one utterance, so ``min_silence_ms`` defaults
to 1300 (pauses up to ~1.3 s are bridged). The price is latency: the end of an utterance
is only known ``min_silence_ms`` after the speech stops, so the verdict comes about 1.3 s
after the last word; lower it for snappier results with speakers that don't pause, raise
it for hesitant speakers. Other defaults: trigger_ratio 0.6 over 300 ms, speech_pad_ms
300, aggressiveness 2, 30 ms frames, min_speech_ms 250, max_utterance_s 15, noise gate 10 dB.

Noise gate (``vad.noise_gate_db``; 0 disables it): webrtcvad calls steady noise and
babble speech, so under background noise the state machine would never see
``min_silence_ms`` of silence and consecutive commands would merge. With the gate, a frame
is strong evidence only if webrtcvad says speech AND its energy is ``noise_gate_db`` above
the running noise floor, and weak evidence if it is a smaller, noise-adapted margin above
(:mod:`intentd.daemon.audio.noise_gate`). This hysteresis lets the gate decide whether speech is
present and the weak evidence where it begins and ends: a plain gate (every voiced frame strong)
cut quiet first words and soft tails. In babble, weak frames do not hold an utterance open:
babble never stops producing them (98% of it is webrtcvad speech); with every weak frame counting
for the hangover 13% of babble commands (generated calls, 15-25 dB SNR) were segmented
one-to-one, with those attached to the voiced span 63%, with strong frames only 72%. In
noise that does not fool webrtcvad (``NoiseGate.steady``: pink, brown, hum, quiet rooms) an
attached weak frame holds it open like a strong one, as ungated: otherwise a soft word after
a pause (the demo call's "... direct debit [pause] for phone") ran out the hangover
and split off as a separate utterance. In such noise weak frames also count towards the
trigger once the ring holds ``TRIGGER_MIN_STRONG`` (2) strong frames: a fast speaker leaves
short voiced bursts with unvoiced frames between them, and under pink noise at 17 dB "i'd
like to cancel my direct debit" never had 6 strong frames in 300 ms (its start came 0.6 s
late, after the high-passed gate it was missed). Whether the noise fools webrtcvad is only
judged after ``STEADY_MIN_S`` of it; until then weak frames neither hold nor trigger
(otherwise babble at the start of a stream passes for steady: generated babble calls .97 ->
.92 one-to-one).
``BRIDGE_MS`` (120) spans stop closures and the gaps between the words of a phrase: with 30
ms the e2e call's quiet "what is" starts 0.29 s late; 60 ms keeps 2% fewer boundaries
within 150 ms in pink noise, 210 ms lets babble stretch them (40% -> 22% within 150 ms).

Measurements, and why the gate is on by default: :mod:`intentd.daemon.audio.noise_gate`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from intentd.daemon.config import VadConfig

VAD_RATES_HZ = (8000, 16000, 32000, 48000)
REACH_MS = 1000  # weak evidence moves a boundary at most this far beyond the strong evidence
BRIDGE_MS = 120  # longest run of non-weak frames inside a weakly voiced stretch
# In steady noise, weak frames count towards the trigger once the ring holds this many strong
# ones (module docstring).
TRIGGER_MIN_STRONG = 2


def ms_to_frames(ms: float, frame_ms: int) -> int:
    """``ceil(ms / frame_ms)``, tolerant to float noise (e.g. 15.0 s / 30 ms = 500)."""
    return max(0, math.ceil(ms / frame_ms - 1e-9))


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" | "end" | "discard"
    index: int  # utterance index, counting every start
    frame: int  # start: first frame; end/discard: exclusive end frame
    reason: str = ""  # end: "silence" | "max_length" | "eof"; discard: "too_short"
    voiced_start: int = -1  # start/end/discard: first voiced frame of the utterance
    voiced_end: int = -1  # end/discard: last voiced frame + 1


class VadStateMachine:
    def __init__(self, cfg: VadConfig) -> None:
        f = cfg.frame_ms
        self.frame_ms = f
        self.window_frames = max(1, ms_to_frames(cfg.trigger_window_ms, f))
        self.need_voiced = max(1, math.ceil(cfg.trigger_ratio * self.window_frames - 1e-9))
        self.pad_frames = ms_to_frames(cfg.speech_pad_ms, f)
        self.silence_frames = max(1, ms_to_frames(cfg.min_silence_ms, f))
        self.min_speech_frames = ms_to_frames(cfg.min_speech_ms, f)
        self.max_frames = max(1, math.floor(cfg.max_utterance_s * 1000 / f + 1e-9))
        # Ungated, weak evidence is the strong one: reaching back would only re-find voiced
        # frames that failed to trigger (clicks), so it stays off and the old rules hold.
        self.reach_frames = ms_to_frames(REACH_MS, f) if cfg.noise_gate_db > 0 else 0
        self.bridge_frames = ms_to_frames(BRIDGE_MS, f)
        # (frame, strong, counts towards the trigger)
        self._ring: deque[tuple[int, bool, bool]] = deque(maxlen=self.window_frames)
        # Idle only: weak flags of the frames an onset may reach back to (the ring's too).
        self._weak: deque[bool] = deque(maxlen=self.window_frames + self.reach_frames)
        self._n = 0  # frames seen
        self._prev_end = 0
        self._next_index = 0
        self._in_speech = False
        self._index = -1
        self._start = 0
        self._length_from = 0  # max_utterance_s counts from here
        self._first_voiced: int | None = None
        self._last_voiced: int | None = None
        self._silence_run = 0
        self._last_strong = 0

    @property
    def frames_seen(self) -> int:
        return self._n

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def silence_run(self) -> int:
        """Frames since the open utterance's speech last held it open (0 when idle)."""
        return self._silence_run if self._in_speech else 0

    @property
    def last_voiced(self) -> int | None:
        """Last voiced frame of the open utterance (None when idle or none yet)."""
        return self._last_voiced if self._in_speech else None

    def _begin(self, start: int, first_voiced: int | None, i: int) -> VadEvent:
        self._in_speech = True
        self._index = self._next_index
        self._next_index += 1
        self._start = self._length_from = start
        self._first_voiced = first_voiced
        self._last_voiced = i if first_voiced is not None else None
        self._silence_run = 0
        self._last_strong = i
        # A max_length continuation has no voiced frame yet: its speech starts at the split.
        return VadEvent("start", self._index, start,
                        voiced_start=start if first_voiced is None else first_voiced)

    def _finish(self, end: int, reason: str) -> VadEvent:
        fv, lv = self._first_voiced, self._last_voiced
        span = 0 if fv is None or lv is None else lv - fv + 1
        self._in_speech = False
        self._prev_end = end
        self._ring.clear()
        self._weak.clear()
        self._first_voiced = self._last_voiced = None
        if span < self.min_speech_frames or span == 0:
            if fv is None or lv is None:
                return VadEvent("discard", self._index, end, "too_short")
            return VadEvent("discard", self._index, end, "too_short", fv, lv + 1)
        assert fv is not None and lv is not None
        return VadEvent("end", self._index, end, reason, fv, lv + 1)

    def _onset(self, first: int) -> int:
        """Start of the weakly voiced stretch leading into ``first`` (the first strong frame
        of the trigger ring): bridges up to ``bridge_frames`` non-weak frames, reaches at
        most ``reach_frames`` back and never before the previous utterance's end."""
        hist_start = self._n - len(self._weak)  # frame index of self._weak[0]
        lo = max(first - self.reach_frames, self._prev_end, hist_start)
        weak = list(self._weak)
        onset, gap = first, 0
        for k in range(first - 1, lo - 1, -1):
            if weak[k - hist_start]:
                onset, gap = k, 0
            else:
                gap += 1
                if gap > self.bridge_frames:
                    break
        return onset

    def _attached(self, i: int) -> bool:
        """Whether a weak frame ``i`` of an open utterance continues its speech: at most
        ``bridge_frames`` after the last voiced frame and ``reach_frames`` after the last
        strong one. Ungated ``reach_frames`` is 0, so only strong frames count."""
        lv = self._last_voiced
        return (lv is None or i - lv - 1 <= self.bridge_frames) \
            and i - self._last_strong <= self.reach_frames

    def step(self, is_speech: bool, weak: bool | None = None,
             weak_holds: bool = False) -> list[VadEvent]:
        """Feed one frame. ``is_speech``: strong evidence, the only kind that starts an
        utterance, and the kind that keeps it open. ``weak`` (default: ``is_speech``; strong
        implies it): moves the utterance's boundaries (see the module docstring).
        ``weak_holds``: an attached weak frame keeps the utterance open too, and a weak frame
        counts towards the trigger once the ring holds ``TRIGGER_MIN_STRONG`` strong frames
        (the Segmenter sets it in noise that does not fool webrtcvad)."""
        voiced = is_speech or bool(weak)
        i = self._n
        self._n += 1
        events: list[VadEvent] = []
        if not self._in_speech:
            self._ring.append((i, is_speech, is_speech or (weak_holds and voiced)))
            self._weak.append(voiced)
            strong = sum(s for _, s, _ in self._ring)
            counted = sum(c for _, _, c in self._ring) if strong >= TRIGGER_MIN_STRONG else strong
            if counted < self.need_voiced:
                return events
            first = self._onset(next(j for j, s, _ in self._ring if s))
            start = max(first - self.pad_frames, self._prev_end, 0)
            events.append(self._begin(start, first, i))
        else:
            attached = is_speech or (voiced and self._attached(i))
            if attached:
                if self._first_voiced is None:
                    self._first_voiced = i
                self._last_voiced = i
            if is_speech or (weak_holds and attached):
                self._last_strong = i
                self._silence_run = 0
            else:
                self._silence_run += 1
                if self._silence_run >= self.silence_frames:
                    lv = self._last_voiced
                    end = i + 1 if lv is None else min(lv + 1 + self.pad_frames, i + 1)
                    events.append(self._finish(end, "silence"))
                    return events
        if self._in_speech and i + 1 - self._length_from >= self.max_frames:
            speech_goes_on = self._last_voiced == i
            events.append(self._finish(i + 1, "max_length"))
            if speech_goes_on:
                events.append(self._begin(i + 1, None, i))
        return events

    def restart_length(self, frame: int) -> None:
        """Count ``max_utterance_s`` from ``frame`` on (segmentation by the model: a pause
        may have ended a command, and the limit is for one command's speech)."""
        if self._in_speech:
            self._length_from = max(self._start, frame)

    def flush(self) -> list[VadEvent]:
        """End of stream: close the open utterance, if any (reason ``"eof"``)."""
        if not self._in_speech:
            return []
        if self._last_voiced is None:
            return [self._finish(self._n, "eof")]
        return [self._finish(min(self._last_voiced + 1 + self.pad_frames, self._n), "eof")]
