"""The audio Segmenter: the state machine's boundaries on real audio blocks, the audio
invariant, pause shortening."""

from __future__ import annotations

import numpy as np
import pytest
from segmenter_helpers import (
    F30,
    SR,
    amplitude_vad,
    check_audio_invariant,
    feed,
    harmonic,
    square,
)

from intentd.daemon.audio.segmenter import Segmenter, UtteranceAudio, UtteranceEnd, UtteranceStart
from intentd.daemon.audio.vad import VadStateMachine
from intentd.daemon.config import VadConfig


def _layout(parts: list[tuple[int, int]], tail_samples: int = 0) -> np.ndarray:
    """(voiced, frames) runs of 30 ms frames, +-0.5 or silence, then ``tail_samples`` of
    voiced signal."""
    audio = np.concatenate([(0.5 if v else 0.0) * np.ones(n * F30, np.float32)
                            for v, n in parts] + [np.full(tail_samples, 0.5, np.float32)])
    return audio * np.where(np.arange(audio.size) % 2, 1, -1).astype(np.float32)


def test_segmenter_matches_state_machine_exactly_for_random_blocks():
    rng = np.random.default_rng(1)
    # Gate off: 18 s of a constant level would become the noise floor (see the gate tests).
    cfg = VadConfig(min_silence_ms=300, noise_gate_db=0.0, max_pause_ms=0)
    layout = [(0, 40), (1, 50), (0, 5), (1, 20), (0, 20), (1, 7), (0, 30), (1, 600), (0, 7)]
    audio = _layout(layout, tail_samples=123)  # partial frame at the end: not classified
    flags = [amplitude_vad((audio[k * F30 : (k + 1) * F30] * 32767).astype("<i2").tobytes())
             for k in range(audio.size // F30)]
    sm, expected = VadStateMachine(cfg), []
    for f in flags:
        expected += sm.step(f)
    expected += sm.flush()
    want = [(a.frame * F30, b.frame * F30, b.reason)
            for a, b in zip(expected[::2], expected[1::2], strict=True) if b.kind == "end"]
    for seed_rng in (None, rng, np.random.default_rng(7)):
        seg = Segmenter(cfg, SR, is_speech=amplitude_vad)
        events = feed(seg, audio, seed_rng)
        assert check_audio_invariant(events, audio) == want
    n_discard = sum(1 for e in expected if e.kind == "discard")
    assert n_discard == 1  # the 7-frame burst: triggers, but shorter than min_speech
    assert [r for _, _, r in want] == ["silence", "max_length", "eof"]


@pytest.mark.parametrize("kind", ["harmonic", "noise"])
def test_segmenter_webrtcvad_bursts(kind: str):
    rng = np.random.default_rng(3)
    # defaults: 30 ms frames, pad 10 frames, hangover 44 frames; pauses kept whole
    cfg = VadConfig(max_pause_ms=0)

    def burst(n_frames: int) -> np.ndarray:
        if kind == "noise":
            return (rng.standard_normal(n_frames * F30) * 0.1).astype(np.float32)
        return harmonic(n_frames * F30)

    z = lambda n: np.zeros(n * F30, np.float32)  # noqa: E731
    # speech 40..90, pause of 30 frames (0.9 s, bridged), speech 120..160, silence
    # 60 frames (split), speech 220..260, then the stream ends 20 frames later.
    audio = np.concatenate([z(40), burst(50), z(30), burst(40), z(60), burst(40), z(20)])
    events = feed(Segmenter(cfg, SR), audio, rng)
    kept = check_audio_invariant(events, audio)
    assert len(kept) == 2, kept
    (s0, e0, r0), (s1, e1, r1) = kept
    pad = 10 * F30
    # Start within one frame of (speech start - pad); webrtcvad adds its own ~4-5 frames
    # of hangover, so the end is at or up to 6 frames after (speech end + pad).
    assert abs(s0 - (40 * F30 - pad)) <= F30
    assert 160 * F30 + pad <= e0 <= 166 * F30 + pad and r0 == "silence"
    assert abs(s1 - (220 * F30 - pad)) <= F30
    # 20 frames of silence are left at the end: less than the hangover, so "eof"
    assert 260 * F30 + pad <= e1 <= 266 * F30 + pad and r1 == "eof"


def test_segmenter_silence_only_gives_nothing():
    seg = Segmenter(VadConfig(), SR)
    assert seg.process(np.zeros(SR * 3, np.float32)) == []
    assert seg.flush() == []


def test_segmenter_sends_audio_during_speech():
    seg = Segmenter(VadConfig(max_pause_ms=0), SR, is_speech=amplitude_vad)
    events = seg.process(np.zeros(20 * F30, np.float32))
    events += seg.process(square(30, 0.5))
    assert isinstance(events[0], UtteranceStart) and events[0].start_sample == 10 * F30
    audio = [e for e in events if isinstance(e, UtteranceAudio)]
    # everything up to the last processed (voiced) frame is already out
    assert sum(a.samples.size for a in audio) == 40 * F30
    # a pause: only the post-roll pad (10 frames) is sent, the rest is held back
    events = seg.process(np.zeros(20 * F30, np.float32))
    assert sum(e.samples.size for e in events if isinstance(e, UtteranceAudio)) == 10 * F30


def _pieces(events: list) -> list[UtteranceAudio]:
    return [e for e in events if isinstance(e, UtteranceAudio)]


@pytest.mark.parametrize("blocks", [None, 1, 7])
def test_segmenter_shortens_a_long_pause_to_max_pause_ms(blocks: int | None):
    # 120 ms = 4 frames: 2 kept after the last word, 2 before the next one (not the default);
    # gaps shorter than min_pause_ms (300 ms = 10 frames) are not pauses.
    cfg = VadConfig(min_silence_ms=1500, noise_gate_db=0.0, max_pause_ms=120, min_pause_ms=300)
    # speech 40..90, pause 90..120 (30 frames, cut), speech 120..160, gap 160..164 (4
    # frames: kept whole), speech 164..184, gap 184..193 (9 frames, over max_pause_ms but not
    # a pause: kept whole), speech 193..203, then silence: end at 203 + pad 10.
    audio = _layout([(0, 40), (1, 50), (0, 30), (1, 40), (0, 4), (1, 20), (0, 9), (1, 10),
                     (0, 60)])
    seg = Segmenter(cfg, SR, is_speech=amplitude_vad)
    events = feed(seg, audio, None if blocks is None else np.random.default_rng(blocks))
    start, end = events[0], events[-1]
    assert isinstance(start, UtteranceStart) and isinstance(end, UtteranceEnd)
    assert (start.start_sample, end.end_sample) == (30 * F30, 213 * F30)  # stream time
    assert (end.voiced_start_sample, end.voiced_end_sample) == (40 * F30, 203 * F30)
    pieces = _pieces(events)
    for p in pieces:  # each piece is where it says it is in the stream
        np.testing.assert_array_equal(p.samples, audio[p.start_sample : p.start_sample
                                                       + p.samples.size])
    got = np.concatenate([p.samples for p in pieces])
    want = np.concatenate([audio[30 * F30 : 92 * F30], audio[118 * F30 : 213 * F30]])
    np.testing.assert_array_equal(got, want)
    assert (seg.pause_cuts, seg.pause_cut_samples) == (1, 26 * F30)


def test_segmenter_sends_only_half_the_pause_limit_as_post_roll():
    seg = Segmenter(VadConfig(max_pause_ms=120), SR, is_speech=amplitude_vad)
    seg.process(np.zeros(20 * F30, np.float32))
    seg.process(square(30, 0.5))
    # pad is 10 frames, but what may be cut is held back: 2 frames go out now ...
    events = seg.process(np.zeros(20 * F30, np.float32))
    assert sum(e.samples.size for e in _pieces(events)) == 2 * F30
    # ... and the rest of the post-roll once the hangover ends the utterance.
    events = seg.process(np.zeros(40 * F30, np.float32))
    assert sum(e.samples.size for e in _pieces(events)) == 8 * F30
    assert isinstance(events[-1], UtteranceEnd) and events[-1].end_sample == 60 * F30
    assert seg.pause_cuts == 0


def test_segmenter_rejects_unsupported_rate():
    with pytest.raises(ValueError, match="22050"):
        Segmenter(VadConfig(), 22050)



@pytest.mark.parametrize("blocks", [None, 1, 7])
def test_segmenter_reports_pauses_at_their_marks_and_speech_resuming(blocks: int | None):
    from intentd.daemon.audio.segmenter import Pause, Resume

    cfg = VadConfig(min_silence_ms=1300, noise_gate_db=0.0, min_pause_ms=300)
    # speech 40..90, pause 90..115 (25 frames: marks at 10 and 14), speech 115..140,
    # a gap of 5 frames (no pause), speech 145..160, then silence (marks, then the end).
    audio = _layout([(0, 40), (1, 50), (0, 25), (1, 25), (0, 5), (1, 15), (0, 60)])
    seg = Segmenter(cfg, SR, is_speech=amplitude_vad, pause_marks_ms=(300, 420))
    events = feed(seg, audio, None if blocks is None else np.random.default_rng(blocks))
    marks = [e for e in events if isinstance(e, Pause | Resume)]
    assert [(type(e).__name__, getattr(e, "silent_ms", None)) for e in marks] == [
        ("Pause", 300), ("Pause", 420), ("Resume", None), ("Pause", 300), ("Pause", 420)]
    p1, p2, r, p3, _ = marks
    assert (p1.voiced_end_sample, p1.heard_sample) == (90 * F30, 100 * F30)
    assert (p2.voiced_end_sample, p2.heard_sample) == (90 * F30, 104 * F30)
    assert p3.voiced_end_sample == 160 * F30
    # the post-roll is the stream's audio after the speech (pad 300 ms = 10 frames) ...
    np.testing.assert_array_equal(p1.post, audio[90 * F30: 100 * F30])
    # ... and the pre-roll before speech resumes, as far back as the pad reaches
    assert r.voiced_start_sample == 115 * F30
    np.testing.assert_array_equal(r.pre, audio[105 * F30: 115 * F30])
    # every audio piece before a Pause is what the speech before it needs
    sent = 0
    for e in events:
        if isinstance(e, UtteranceAudio):
            sent = e.start_sample + e.samples.size
        elif e is p1:
            assert sent >= 90 * F30
    # the utterance itself is as without marks
    plain = feed(Segmenter(cfg, SR, is_speech=amplitude_vad), audio, None)
    assert [e for e in events if isinstance(e, UtteranceEnd)] == [
        e for e in plain if isinstance(e, UtteranceEnd)]


def test_max_utterance_counts_from_the_last_pause_when_pauses_are_reported():
    # 4 s limit; speech 2 s, a 0.6 s pause, speech 2 s: without marks the limit splits the
    # second stretch, with marks each stretch is short of it
    cfg = VadConfig(min_silence_ms=1300, noise_gate_db=0.0, max_utterance_s=4.0)
    audio = _layout([(0, 20), (1, 67), (0, 20), (1, 67), (0, 60)])
    ends = {}
    for marks in ((), (300,)):
        events = feed(Segmenter(cfg, SR, is_speech=amplitude_vad, pause_marks_ms=marks),
                      audio, None)
        ends[marks] = [e.reason for e in events if isinstance(e, UtteranceEnd)]
    assert ends == {(): ["max_length", "silence"], (300,): ["silence"]}
