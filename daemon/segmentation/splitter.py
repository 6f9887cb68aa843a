"""One utterance's commands: the model decides where its internal pauses end a command.

The VAD ends an utterance only after ``vad.min_silence_ms`` of silence (the hangover), long
enough to keep a hesitant speaker's command whole. Two commands spoken closer together than
that become one utterance, and every answer waits for the whole hangover. This module
weighs in at the utterance's internal pauses (a silence of at least ``vad.min_pause_ms``;
the segmenter reports them, :mod:`intentd.daemon.audio.segmenter`):

* **Early answer**: once the pause has lasted ``early_after_ms``, the command so far is
  answered at once (``"end": "early"``) when the model calls it a complete command (not
  the rejection class) with probability >= ``early_score``.
* **After an early answer** the speaker may go on with the same command (a hesitation
  the early answer did not wait out) or start the next one. A part heard then is the next
  command when it is one on its own: another intent, or the same one sure enough to be
  answered early itself, unless the answer joined with it is far surer (100 to 1 in odds)
  than either alone (the two halves of one command are each a weak verdict, the same
  command said twice two strong ones). It is the answered command's tail (no event) when
  the answer joined with it is that command still, at least as sure (what completes a
  command makes the model surer of it; the start of another does not). Else the part
  after the next pause decides: the tail reading needs the answer with it to stay that
  command, the start reading the two parts to be a command or to be able to become one;
  where both hold, the longer pause is the boundary (a speaker pauses longer between
  commands than inside one).
* **Split**: without an early answer, when speech resumes, the part after the pause is
  scored on its own once it ends (at the next pause or at the utterance's end), and so is
  the joined audio. The pause ends a command (the part before it gets ``"end": "split"``)
  when both parts are complete commands with probability >= ``split_score`` and the
  joined audio is less sure than the two parts on average (in log-odds: the probabilities
  of confident verdicts crowd at 1; a sure next command outweighs a first part said less
  clearly). A part after that is no command (yet) may be the next command's start, said
  with a pause of its own: the pause stays a candidate and the part after it grows to the
  next pause, unless that pause's part before is a command itself. Otherwise the parts
  stay one command.

A part is scored as the utterance it would have been with silence alone: its pre-roll and
post-roll (``vad.speech_pad_ms``) come with it, and a pause inside is as short as the
segmenter made it. A part whose speech is shorter than ``vad.min_speech_ms`` is no command
(a breath or a click after an answer is dropped, as the VAD drops it).

Only a model with the rejection class can say that what it heard is no command (yet): the
engine segments by silence alone for other models (:func:`intentd.daemon.engine.engine.
engine_settings`). Pure: the model is the ``score`` function the worker gives; audio
positions are stream-global sample indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from intentd.daemon.output.events import REJECT_LABEL
from intentd.daemon.segmentation.settings import SegmentationConfig


@dataclass(frozen=True)
class Scored:
    """The model's verdict on a stretch of audio."""

    probs: np.ndarray = field(repr=False)
    slot_probs: np.ndarray | None = field(repr=False)
    label: str
    score: float
    slots: tuple[tuple[str, str], ...] = ()  # the slot values heard, (name, value)

    def says(self, other: Scored) -> bool:
        """Whether both say the same command: intent and slot values."""
        return (self.label, self.slots) == (other.label, other.slots)

    def complete(self, at_least: float) -> bool:
        return self.label != REJECT_LABEL and self.score >= at_least


Score = Callable[[np.ndarray], Scored]
_EMPTY = np.zeros(0, np.float32)


@dataclass(frozen=True)
class Command:
    """A command the splitter ended: the worker turns it into an event."""

    utterance_id: int
    start_sample: int  # its first speech sample
    end_sample: int  # one past its last speech sample
    end: str  # silence | early | split | max_length | eof
    decided_sample: int  # how much of the stream had been heard when it was decided
    scored: Scored | None  # None: the worker scores ``audio`` (with the other verdicts)
    audio: np.ndarray = field(repr=False)


@dataclass
class _Group:
    """The command being heard: from ``start`` (its speech) with audio from ``audio_from``
    (pre-roll), ``pre`` the pre-roll audio not among the pieces (after a pause)."""

    utterance_id: int
    start: int
    audio_from: int
    pre: np.ndarray
    # Heard after an early answer and no command (yet): the answered command's tail, or the
    # start of the next command; the part after it decides.
    after_answer: bool = False


@dataclass
class _Candidate:
    """A pause whose part before is a complete command (``tail`` False) or a possible tail
    of the early answer (``tail`` True): decided when the part after it ends."""

    tail: bool
    before_end: int
    before: Scored
    before_audio: np.ndarray
    before_post: np.ndarray
    after: _Group


_TINY = 1e-30
# How much surer (in odds) the joined audio must be than either part alone for a part of
# the same intent, heard after an early answer, to be that command's tail: 100 to 1.
_SUREST_JOINED = math.log(100.0)


def _logit(s: Scored | None, at_least: float) -> float:
    """How sure the model is of a complete command (-inf: not one), as log-odds: the
    probabilities of confident verdicts crowd at 1. The odds against come from the other
    classes' probabilities, which keep their precision where ``1 - score`` rounds to 0."""
    if s is None or not s.complete(at_least):
        return -math.inf
    against = float(np.sum(np.delete(s.probs, int(np.argmax(s.probs)))))
    return math.log(s.score) - math.log(max(against, _TINY))


class CommandSplitter:
    def __init__(self, settings: SegmentationConfig, score: Score, utterance_id: int,
                 voiced_start_sample: int, start_sample: int, min_speech_samples: int) -> None:
        self.s = settings
        self._score = score
        self._min_speech = min_speech_samples
        self._pieces: list[tuple[int, np.ndarray]] = []  # (stream sample, audio)
        self._group: _Group | None = _Group(utterance_id, voiced_start_sample, start_sample,
                                            _EMPTY)
        self._pause_end: int | None = None  # speech end of the pause being heard
        self._post = _EMPTY  # its post-roll
        self._scored: Scored | None = None  # the group up to the pause being heard
        self._audio = _EMPTY  # ... and its audio
        self._cand: _Candidate | None = None
        # The last early answer: its group, verdict and speech end (with the tail absorbed).
        self._answered: tuple[_Group, Scored, int] | None = None
        # The last verdict on the answer joined with what followed it: (answer, cut, it).
        # A part left pending at a pause is weighed again, up to the same cut, once the
        # part after it ends.
        self._joined: tuple[_Group, int, Scored] | None = None

    # --- input ----------------------------------------------------------------------

    def push(self, start_sample: int, samples: np.ndarray) -> None:
        self._pieces.append((start_sample, np.asarray(samples, dtype=np.float32)))

    def pause(self, voiced_end_sample: int, silent_ms: int, heard_sample: int,
              post: np.ndarray) -> list[Command]:
        """The speech stopped at ``voiced_end_sample`` and has been silent ``silent_ms``
        (reported at each of the segmenter's marks); ``post`` is the post-roll, the
        ``vad.speech_pad_ms`` of audio after ``voiced_end_sample``."""
        out: list[Command] = []
        if self._group is None:
            return out  # answered early: the silence goes on
        if self._pause_end != voiced_end_sample:  # the first mark of this pause
            self._pause_end = voiced_end_sample
            self._post = np.asarray(post, dtype=np.float32)
            if self._cand is not None:
                out += self._resolve(voiced_end_sample, voiced_end_sample, self._post,
                                     heard_sample)
            else:
                g = self._group
                self._audio = self._span(g, voiced_end_sample, self._post)
                self._scored = self._score_if_speech(g, voiced_end_sample, self._audio)
                if g.after_answer:
                    self._weigh_after_answer(voiced_end_sample, self._post)
        g = self._group
        if g is None or g.after_answer:
            return out
        if (self.s.early and silent_ms >= self.s.early_after_ms and self._scored is not None
                and self._scored.complete(self.s.early_score)):
            out.append(Command(g.utterance_id, g.start, voiced_end_sample, "early",
                               heard_sample, self._scored, self._audio))
            self._answered = (g, self._scored, voiced_end_sample)
            self._group = self._cand = None
        return out

    def resume(self, voiced_start_sample: int, utterance_id: int, pre: np.ndarray) -> None:
        """Speech again after a reported pause; ``utterance_id`` names the command that may
        start here, ``pre`` is its pre-roll (the pause's audio before the speech)."""
        pre = np.asarray(pre, dtype=np.float32)
        part = _Group(utterance_id, voiced_start_sample, voiced_start_sample - pre.size, pre)
        g, scored, end = self._group, self._scored, self._pause_end
        if g is None:
            part.after_answer = True
            self._group = part
            self._drop_before(self._answered[0].audio_from if self._answered else part.audio_from)
        elif end is not None and scored is not None and (
                g.after_answer or scored.complete(self.s.split_score)):
            self._cand = _Candidate(g.after_answer, end, scored, self._audio, self._post, part)
        self._pause_end = None

    def end(self, voiced_end_sample: int, end_sample: int, reason: str, heard_sample: int
            ) -> list[Command]:
        """The utterance ended (VAD ``reason``; its audio, post-roll included, runs to
        ``end_sample``): the commands left to answer, the last one's ``scored`` None when
        the worker is to score its ``audio``."""
        out: list[Command] = []
        if self._group is None:
            return out
        if self._pause_end != voiced_end_sample:  # speech since the last pause, if any
            if self._cand is not None:
                out += self._resolve(voiced_end_sample, end_sample, _EMPTY, heard_sample)
            else:
                self._scored = None
                self._audio = self._span(self._group, end_sample, _EMPTY)
        g = self._group
        self._group = None
        if g is None or voiced_end_sample - g.start < self._min_speech:
            return out
        if g.after_answer:
            if self._scored is None:
                self._scored = self._score_if_speech(g, voiced_end_sample, self._audio)
            kind = self._after_answer(self._scored, end_sample, _EMPTY)
            if kind == "tail" or (kind == "pending" and self._scored is not None
                                  and self._scored.label == REJECT_LABEL):
                return out  # the answered command's tail
        out.append(Command(g.utterance_id, g.start, voiced_end_sample, reason, heard_sample,
                           self._scored, self._audio))
        return out

    # --- decisions ------------------------------------------------------------------

    def _weigh_after_answer(self, cut: int, post: np.ndarray) -> None:
        """The group heard after an early answer was scored at a pause: a command becomes
        an ordinary group, a tail is dropped, anything else stays pending (the part after
        the pause decides, :meth:`_resolve`, or the end)."""
        g = self._group
        assert g is not None and g.after_answer
        kind = self._after_answer(self._scored, cut, post)
        if kind == "command":
            g.after_answer = False
        elif kind == "tail":
            self._group = None

    def _after_answer(self, scored: Scored | None, cut: int, post: np.ndarray) -> str:
        """What a part heard after an early answer is: ``command`` (another intent, or one
        sure enough to be answered early itself), ``tail`` (too short for a command; joined
        with the answer it is that command still, at least as sure: what completes a
        command makes the model surer of it; or of the same intent and far surer joined
        than either alone), else ``pending``."""
        assert self._answered is not None
        if scored is None:
            return "tail"
        said, at = self._answered[1], self.s.split_score
        if scored.complete(at) and scored.label == said.label:
            # The same intent again, or the rest of the answered command: the parts of one
            # command are each a weak verdict and far surer together.
            longer = self._answer_joined(cut, post)
            if longer.label == said.label and _logit(longer, at) > max(
                    _logit(said, at), _logit(scored, at)) + _SUREST_JOINED:
                self._answered = (self._answered[0], longer, cut)
                return "tail"
        if scored.complete(at) and (
                scored.label != said.label or scored.complete(self.s.early_score)):
            return "command"
        if self._completes_answer(cut, post):
            return "tail"
        return "pending"

    def _completes_answer(self, cut: int, post: np.ndarray) -> bool:
        """Whether the early answer joined with what followed it up to ``cut`` is that
        command still, at least as sure: then what followed is its tail, and the answered
        command is heard up to ``cut`` (the next part is weighed against that)."""
        assert self._answered is not None
        first, said, _ = self._answered
        longer = self._answer_joined(cut, post)
        if longer.label == said.label and longer.score >= said.score:
            self._answered = (first, longer, cut)
            return True
        return False

    def _answer_joined(self, cut: int, post: np.ndarray) -> Scored:
        """The verdict on the early answer with what followed it up to ``cut``."""
        assert self._answered is not None
        first = self._answered[0]
        if self._joined is None or self._joined[0] is not first or self._joined[1] != cut:
            self._joined = (first, cut, self._score(self._span(first, cut, post)))
        return self._joined[2]

    def _resolve(self, end: int, cut: int, post: np.ndarray, heard: int) -> list[Command]:
        """The part after the candidate pause ended at ``end``: does the pause end a
        command (split), or is the part before the early answer's tail?"""
        c, g = self._cand, self._group
        assert c is not None and g is not None
        self._cand = None
        at = self.s.split_score
        after_audio = self._span(c.after, cut, post)
        joined_audio = self._span(g, cut, post)
        after = self._score_if_speech(c.after, end, after_audio)
        joined = self._score(joined_audio)
        if c.tail:  # the part before: the early answer's tail, or the next command's start?
            assert self._answered is not None
            first, said, said_end = self._answered
            longer = self._answer_joined(c.before_end, c.before_post)
            # The part before may be the answer's tail when the answer with it is that
            # command still, and the next command's start when the two parts are a command
            # or may become one. Where both readings hold, the longer pause is the boundary:
            # a speaker pauses longer between commands than inside one.
            tail_ok = longer.label == said.label and longer.complete(at)
            longer_pause_after = c.after.start - c.before_end > g.start - said_end
            if joined.complete(at):
                as_tail = tail_ok and longer_pause_after
            else:
                as_tail = tail_ok and ((after is not None and after.complete(at))
                                       or longer_pause_after)
            if as_tail:
                self._answered = (first, longer, c.before_end)
                self._group, self._scored, self._audio = c.after, after, after_audio
                self._drop_before(c.after.audio_from)
                return []
            g.after_answer = not joined.complete(at)
            self._scored, self._audio = joined, joined_audio
            return []
        if after is None or not after.complete(at):
            # The next command may have begun with a pause of its own: the candidate stays
            # open, the part after it grows to the next pause (a later pause whose part
            # before is a command replaces it).
            self._cand = c
            self._scored, self._audio = joined, joined_audio
            return []
        if (_logit(c.before, at) + _logit(after, at)) / 2 > _logit(joined, at):
            self._group, self._scored, self._audio = c.after, after, after_audio
            self._drop_before(c.after.audio_from)
            return [Command(g.utterance_id, g.start, c.before_end, "split", heard, c.before,
                            c.before_audio)]
        self._scored, self._audio = joined, joined_audio
        return []

    def _drop_before(self, sample: int) -> None:
        """Forget the audio before ``sample``: no command left to weigh reaches it (an
        utterance held open by short pauses may go on for long)."""
        self._pieces = [(start, x) for start, x in self._pieces if start + x.size > sample]

    def _score_if_speech(self, g: _Group, end: int, audio: np.ndarray) -> Scored | None:
        if end - g.start < self._min_speech:
            return None
        return self._score(audio)

    def _span(self, g: _Group, cut: int, post: np.ndarray) -> np.ndarray:
        """The group's audio: its pre-roll, the pieces up to ``cut``, then ``post``."""
        parts = [g.pre]
        lo = g.start if g.pre.size else g.audio_from
        for start, samples in self._pieces:
            a, b = max(lo, start), min(cut, start + samples.size)
            if b > a:
                parts.append(samples[a - start: b - start])
        parts.append(post)
        return np.concatenate(parts)
