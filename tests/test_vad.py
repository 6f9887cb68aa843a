"""VAD state machine (exact frame indices) and the audio Segmenter (boundaries, audio invariant)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.config import VadConfig
from daemon.noisefloor import (
    GATE_HIGHPASS_HZ,
    NOISE_FLOOR_MIN_DBFS,
    STEADY_MIN_S,
    STRONG_MAX_OVER_GATE_DB,
    STRONG_OVER_FOOLED_DB,
    WEAK_MIN_DB,
    FooledLevel,
    GateEnergy,
    NoiseFloor,
    NoiseGate,
    frame_energy_dbfs,
)
from daemon.segmenter import (
    Discarded,
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from daemon.vad import TRIGGER_MIN_STRONG, VadEvent, VadStateMachine

# 10 ms frames: trigger ring 5 frames (need 3 voiced), pad 2, hangover 4, min speech 3.
# Ungated: every voiced frame is strong evidence (the rules without hysteresis).
SMALL = VadConfig(
    aggressiveness=2,
    frame_ms=10,
    speech_pad_ms=20,
    trigger_ratio=0.6,
    trigger_window_ms=50,
    min_silence_ms=40,
    min_speech_ms=30,
    max_utterance_s=1.0,
    noise_gate_db=0.0,
)


def run(flags: str, cfg: VadConfig = SMALL, flush: bool = True) -> list[tuple]:
    """Feed '1'/'0' flags; return (frame_fed, kind, index, frame, reason) per event."""
    sm = VadStateMachine(cfg)
    out = []
    for i, ch in enumerate(flags.replace(" ", "")):
        out += [(i, e.kind, e.index, e.frame, e.reason) for e in sm.step(ch == "1")]
    if flush:
        out += [("eof", e.kind, e.index, e.frame, e.reason) for e in sm.flush()]
    return out


def test_frame_counts_from_defaults():
    sm = VadStateMachine(VadConfig())
    assert (sm.window_frames, sm.need_voiced, sm.pad_frames) == (10, 6, 10)
    assert (sm.silence_frames, sm.min_speech_frames, sm.max_frames) == (44, 9, 500)
    assert (sm.reach_frames, sm.bridge_frames) == (34, 4)  # gate on by default: 1 s, 120 ms
    ungated = VadStateMachine(VadConfig(noise_gate_db=0.0))
    assert (ungated.reach_frames, ungated.bridge_frames) == (0, 4)  # no reach without a gate


def test_trigger_with_preroll_and_silence_end():
    assert run("0000000 111 0000000000") == [
        (9, "start", 0, 5, ""),  # first voiced 7 - pad 2
        (13, "end", 0, 12, "silence"),  # last voiced 9 + 1 + pad 2
    ]


def test_trigger_ratio_not_reached():
    assert run("10100 10010 00000") == []


def test_trigger_ratio_reached_with_gaps_and_preroll_clipped_at_zero():
    assert run("10101 0000") == [(4, "start", 0, 0, ""), (8, "end", 0, 7, "silence")]


def test_pause_shorter_than_min_silence_stays_inside():
    assert run("111 000 111 0000") == [(2, "start", 0, 0, ""), (12, "end", 0, 11, "silence")]


def test_pause_as_long_as_min_silence_splits_and_preroll_stops_at_previous_end():
    assert run("111 0000 111 0000") == [
        (2, "start", 0, 0, ""),
        (6, "end", 0, 5, "silence"),
        (9, "start", 1, 5, ""),  # 7 - 2 = 5 = previous end
        (13, "end", 1, 12, "silence"),
    ]


def test_preroll_not_before_previous_end():
    assert run("111 0000 0 111 0000") == [
        (2, "start", 0, 0, ""),
        (6, "end", 0, 5, "silence"),
        (10, "start", 1, 6, ""),
        (14, "end", 1, 13, "silence"),
    ]


def test_postroll_capped_where_hangover_ended():
    cfg = VadConfig(**{**SMALL.__dict__, "speech_pad_ms": 60})
    assert run("111 0000", cfg) == [(2, "start", 0, 0, ""), (6, "end", 0, 7, "silence")]


def test_isolated_voiced_frame_resets_hangover():
    assert run("111 000 1 0000") == [(2, "start", 0, 0, ""), (10, "end", 0, 9, "silence")]


def test_short_burst_is_discarded():
    cfg = VadConfig(**{**SMALL.__dict__, "min_speech_ms": 40})
    # voiced span 1..3 = 3 frames < 4
    assert run("0111 0000", cfg) == [(3, "start", 0, 0, ""), (7, "discard", 0, 6, "too_short")]
    # a 4-frame span is kept
    assert run("01111 0000", cfg) == [(3, "start", 0, 0, ""), (8, "end", 0, 7, "silence")]


def test_min_speech_counts_span_including_pauses():
    cfg = VadConfig(**{**SMALL.__dict__, "min_speech_ms": 60})
    # voiced frames 0,1,2 and 5: span 0..5 = 6 frames although only 4 are voiced
    assert run("111 00 1 0000", cfg) == [(2, "start", 0, 0, ""), (9, "end", 0, 8, "silence")]


def test_max_length_split_continues_immediately():
    cfg = VadConfig(**{**SMALL.__dict__, "max_utterance_s": 0.2})  # 20 frames
    assert run("1" * 30 + "0000", cfg) == [
        (2, "start", 0, 0, ""),
        (19, "end", 0, 20, "max_length"),
        (19, "start", 1, 20, ""),
        (33, "end", 1, 32, "silence"),
    ]


def test_max_length_split_in_a_pause_goes_idle():
    cfg = VadConfig(**{**SMALL.__dict__, "max_utterance_s": 0.2})
    flags = "1" * 18 + "00" + "0000"
    assert run(flags, cfg) == [(2, "start", 0, 0, ""), (19, "end", 0, 20, "max_length")]


def test_eof_flush_ends_open_utterance_with_postroll_capped_at_stream_end():
    assert run("00111") == [(4, "start", 0, 0, ""), ("eof", "end", 0, 5, "eof")]
    assert run("00111 0 00") == [(4, "start", 0, 0, ""), ("eof", "end", 0, 7, "eof")]


def test_eof_when_idle_emits_nothing():
    assert run("0011 000000") == []
    sm = VadStateMachine(SMALL)
    assert sm.flush() == []


def test_eof_discards_short_open_utterance():
    cfg = VadConfig(**{**SMALL.__dict__, "min_speech_ms": 50})
    assert run("111", cfg) == [(2, "start", 0, 0, ""), ("eof", "discard", 0, 3, "too_short")]


def test_end_event_carries_voiced_span():
    sm = VadStateMachine(SMALL)
    events = [e for f in "0000 111 00 1 0000" if f != " " for e in sm.step(f == "1")]
    assert events == [VadEvent("start", 0, 2, voiced_start=4),
                      VadEvent("end", 0, 12, "silence", 4, 10)]


def test_discard_and_split_continuation_carry_voiced_frames():
    cfg = VadConfig(**{**SMALL.__dict__, "min_speech_ms": 40})
    sm = VadStateMachine(cfg)
    events = [e for f in "0111 0000" if f != " " for e in sm.step(f == "1")]
    assert events == [VadEvent("start", 0, 0, voiced_start=1),
                      VadEvent("discard", 0, 6, "too_short", 1, 4)]
    sm = VadStateMachine(VadConfig(**{**SMALL.__dict__, "max_utterance_s": 0.2}))
    events = [e for _ in range(25) for e in sm.step(True)]
    assert events[2] == VadEvent("start", 1, 20, voiced_start=20)


def test_event_type():
    assert VadStateMachine(SMALL).step(True) == []
    assert VadEvent("start", 0, 3) == VadEvent("start", 0, 3, "")


# ------------------------------------------------------------- hysteresis (gated machine)

# 30 ms frames: ring 5 (need 3 strong), pad 2, hangover 10, reach 34 (1 s), bridge 4 (120 ms).
GATED = VadConfig(frame_ms=30, speech_pad_ms=60, trigger_window_ms=150, min_silence_ms=300,
                  min_speech_ms=90, max_utterance_s=15.0, noise_gate_db=10.0)


def graded(flags: str, cfg: VadConfig = GATED) -> list[VadEvent]:
    """Feed '1' (strong), 'w' (weak only) and '0' frames; return every event, flush included."""
    sm = VadStateMachine(cfg)
    events = [e for ch in flags.replace(" ", "") for e in sm.step(ch == "1", ch in "1w")]
    return events + sm.flush()


def test_onset_reaches_back_over_weak_frames_and_short_gaps():
    # weak 10-11, gap 12, weak 13, strong 14-16 (trigger at 16); frames 5-9: 5 > 4 unweak
    events = graded("00000 00000 ww0w 111" + "0" * 10)
    assert events == [VadEvent("start", 0, 8, voiced_start=10),  # onset 10 - pad 2
                      VadEvent("end", 0, 19, "silence", 10, 17)]
    # ungated the weak flags play no part: the onset is the first strong frame
    ungated = VadConfig(**{**GATED.__dict__, "noise_gate_db": 0.0})
    assert graded("00000 00000 ww0w 111" + "0" * 10, ungated)[0] == VadEvent(
        "start", 0, 12, voiced_start=14)


def test_onset_bridges_at_most_bridge_frames():
    assert graded("0000 w 0000 111")[0] == VadEvent("start", 0, 2, voiced_start=4)
    assert graded("0000 w 00000 111")[0] == VadEvent("start", 0, 8, voiced_start=10)


def test_onset_reaches_back_at_most_reach_frames():
    # 50 weak frames, first strong at 50: the onset stops 34 frames before it
    assert graded("w" * 50 + "111")[0] == VadEvent("start", 0, 14, voiced_start=16)


def test_onset_and_preroll_stop_at_previous_end():
    # utterance 0: hangover 3..12 after its last strong frame 2, weak tail up to 12, so it
    # ends at 13 (capped where the hangover ended); the weak frame 13 is the next onset and
    # its pre-roll would overlap utterance 0
    events = graded("111" + "w" * 10 + "w 111" + "0" * 10)
    assert events[:3] == [VadEvent("start", 0, 0, voiced_start=0),
                          VadEvent("end", 0, 13, "silence", 0, 13),
                          VadEvent("start", 1, 13, voiced_start=13)]
    # a pre-roll that fits is kept: utterance 0 ends at 5, the onset at 13 starts at 11
    events = graded("111" + "0" * 10 + "ww 111" + "0" * 10)
    assert events[1:3] == [VadEvent("end", 0, 5, "silence", 0, 3),
                           VadEvent("start", 1, 11, voiced_start=13)]
    sm = VadStateMachine(GATED)
    for ch in "111" + "0" * 10:
        sm.step(ch == "1")
    assert sm.step(False, True) == [] and not sm.in_speech  # weak frames never trigger


def test_weak_tail_extends_the_end_but_does_not_hold_the_utterance_open():
    # weak 3-4, gap 5, weak 6: the voiced span ends at 7, the end at 7 + pad
    assert graded("111 ww0w" + "0" * 10) == [VadEvent("start", 0, 0, voiced_start=0),
                                             VadEvent("end", 0, 9, "silence", 0, 7)]
    # a weak frame after more than 4 unweak frames is not attached
    assert graded("111 00000 w" + "0" * 10)[1] == VadEvent("end", 0, 5, "silence", 0, 3)
    # endless weak frames: still ends 10 frames after the last strong one (at frame 13)
    assert graded("111" + "w" * 30)[1] == VadEvent("end", 0, 13, "silence", 0, 13)


def test_weak_frames_hold_the_utterance_open_only_in_steady_noise():
    """``weak_holds`` (the Segmenter passes it where the noise does not fool webrtcvad): an
    attached weak frame then resets the hangover like a strong one, so a soft word after a
    pause keeps the command whole; unattached weak frames still do not."""
    def run(flags: str, holds: bool) -> list[VadEvent]:
        sm = VadStateMachine(GATED)
        events = [e for ch in flags.replace(" ", "")
                  for e in sm.step(ch == "1", ch in "1w", holds and ch in "1w")]
        return events + sm.flush()

    # strong 0-2, weak 3-12 (a soft word), strong 13-15: held, one utterance
    flags = "111" + "w" * 10 + "111" + "0" * 10
    assert run(flags, holds=True) == [VadEvent("start", 0, 0, voiced_start=0),
                                      VadEvent("end", 0, 18, "silence", 0, 16)]
    # not held (babble): the hangover ends at 13 and the rest is a second utterance
    assert [e.kind for e in run(flags, holds=False)] == ["start", "end", "start", "end"]
    # a weak frame after a gap of more than 4 frames is not attached: it does not hold
    assert run("111 00000 w" + "0" * 10, holds=True)[1] == VadEvent(
        "end", 0, 5, "silence", 0, 3)


def test_weak_frames_count_towards_the_trigger_only_in_steady_noise_with_two_strong():
    """Ring of 5 frames, 3 needed. With ``weak_holds`` (steady noise) weak frames count once
    the ring holds ``TRIGGER_MIN_STRONG`` (2) strong ones; fast speech under steady noise
    leaves too few frames 10 dB over the floor to trigger on strong frames alone."""
    assert TRIGGER_MIN_STRONG == 2

    def starts(flags: str, holds: bool) -> list[VadEvent]:
        sm = VadStateMachine(GATED)
        return [e for ch in flags.replace(" ", "")
                for e in sm.step(ch == "1", ch in "1w", holds and ch in "1w")
                if e.kind == "start"]

    # strong 5 and 7, weak 6: 3 of 5 counted at frame 7; the onset reaches back to 5
    assert starts("00000 1w1 00000", holds=True) == [VadEvent("start", 0, 3, voiced_start=5)]
    assert starts("00000 1w1 00000", holds=False) == []  # babble: strong frames only
    # one strong frame is not enough, however many weak ones surround it
    assert starts("00000 ww1ww 00000", holds=True) == []
    # the ring is 5 frames: strong 0 and 6 are never in it together
    assert starts("1wwww w1 00000", holds=True) == []


def test_weak_tail_reaches_at_most_reach_frames_past_the_last_strong_frame():
    cfg = VadConfig(**{**GATED.__dict__, "min_silence_ms": 1500})  # hangover 50 frames
    # weak frames attach up to frame 2 + 34 = 36; end = 36 + 1 + pad 2
    assert graded("111" + "w" * 60, cfg)[1] == VadEvent("end", 0, 39, "silence", 0, 37)


# --------------------------------------------------------------------------- Segmenter

SR = 16000
F30 = 480


def feed(seg: Segmenter, audio: np.ndarray, rng: np.random.Generator | None) -> list:
    events, i = [], 0
    while i < audio.size:
        n = int(rng.integers(1, 2000)) if rng is not None else audio.size
        events += seg.process(audio[i : i + n])
        i += n
    return events + seg.flush()


def check_audio_invariant(events: list, audio: np.ndarray) -> list[tuple[int, int, str]]:
    """Each kept utterance's audio equals audio[start:end]; returns (start, end, reason)."""
    utts: dict[int, dict] = {}
    kept = []
    for ev in events:
        if isinstance(ev, UtteranceStart):
            assert ev.index not in utts
            utts[ev.index] = {"start": ev.start_sample, "pieces": [], "next": ev.start_sample}
        elif isinstance(ev, UtteranceAudio):
            u = utts[ev.index]
            assert ev.start_sample == u["next"], "audio pieces must be contiguous"
            u["pieces"].append(ev.samples)
            u["next"] += ev.samples.size
        elif isinstance(ev, UtteranceEnd):
            u = utts[ev.index]
            got = np.concatenate(u["pieces"]) if u["pieces"] else np.zeros(0, np.float32)
            np.testing.assert_array_equal(got, audio[u["start"] : ev.end_sample])
            kept.append((u["start"], ev.end_sample, ev.reason))
            assert u["start"] <= ev.voiced_start_sample < ev.voiced_end_sample <= ev.end_sample
        else:
            assert isinstance(ev, Discarded) and ev.index in utts
    return kept


def amplitude_vad(pcm: bytes) -> bool:
    return bool(np.abs(np.frombuffer(pcm, "<i2")).max() > 1000)


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


def harmonic(n: int, f0: float = 140.0) -> np.ndarray:
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


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


# --------------------------------------------------------------------------- noise gate


def test_noise_floor_percentile_window_and_absolute_floor():
    nf = NoiseFloor(frame_ms=30, window_s=0.3)  # 10 frames, 10th percentile
    assert nf.floor_dbfs == NOISE_FLOOR_MIN_DBFS  # nothing seen yet
    for _ in range(10):
        nf.add(-120.0)  # digital silence never lowers the floor below the absolute floor
    assert nf.floor_dbfs == NOISE_FLOOR_MIN_DBFS
    for _ in range(10):
        nf.add(-40.0)  # the silence has left the window: the floor is the noise level
    assert nf.floor_dbfs == pytest.approx(-40.0)
    for _ in range(3):
        nf.add(-10.0)  # a loud burst fills 30% of the window: the low percentile ignores it
    assert nf.floor_dbfs == pytest.approx(-40.0)
    np.testing.assert_allclose(frame_energy_dbfs(np.full((2, 480), 0.1)), [-20.0, -20.0])


def test_gate_energy_is_the_same_for_any_split_into_blocks():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 480)) * 0.05 + np.sin(np.arange(40 * 480) * 0.02).reshape(40, 480)
    whole = GateEnergy(16000).frames_dbfs(x)
    for seed in range(3):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, 40), 6, replace=False))
        ge = GateEnergy(16000)
        parts = np.concatenate([ge.frames_dbfs(b) for b in np.split(x, cuts)])
        np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-9)
    assert GateEnergy(16000).frames_dbfs(np.zeros((0, 480))).shape == (0,)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_gate_energy_drops_rumble_and_keeps_speech_band(rate: int):
    """2nd-order Butterworth: |H(f)|^2 = 1 / (1 + (fc / f)^4) once the transient is gone."""
    t = np.arange(rate * 2) / rate
    frame = rate * 30 // 1000
    for f_hz in (50.0, 1000.0):
        tone = 0.1 * np.sin(2 * np.pi * f_hz * t)
        x = tone[: tone.size // frame * frame].reshape(-1, frame)
        db = GateEnergy(rate).frames_dbfs(x)[20:]  # past 0.6 s of filter transient
        expected = frame_energy_dbfs(x[20:]) - 10 * np.log10(1 + (GATE_HIGHPASS_HZ / f_hz) ** 4)
        np.testing.assert_allclose(db, expected, atol=0.05)
    # 50 Hz hum loses 12.3 dB, a 1 kHz formant 0.0004 dB.


def square(n_frames: int, amp: float) -> np.ndarray:
    """Alternating +-amp: every frame has energy exactly 20*log10(amp) dBFS."""
    n = n_frames * F30
    return (amp * np.where(np.arange(n) % 2, 1.0, -1.0)).astype(np.float32)


def test_gate_splits_bursts_over_noise_that_the_vad_calls_speech():
    # Stand-in for webrtcvad under steady noise: every frame is "speech". Noise at -40 dBFS,
    # bursts at -14 dBFS (26 dB above), 60-frame (1.8 s) noise gaps > 44-frame hangover.
    noise, burst = (lambda n: square(n, 0.01)), (lambda n: square(n, 0.2))
    audio = np.concatenate([noise(40), burst(40), noise(60), burst(40), noise(60)])
    always = lambda pcm: True  # noqa: E731
    pad = 10 * F30
    gated = feed(Segmenter(VadConfig(noise_gate_db=10.0), SR, is_speech=always), audio, None)
    assert check_audio_invariant(gated, audio) == [
        (40 * F30 - pad, 80 * F30 + pad, "silence"),
        (140 * F30 - pad, 180 * F30 + pad, "silence"),
    ]
    merged = feed(Segmenter(VadConfig(noise_gate_db=0.0), SR, is_speech=always), audio, None)
    assert check_audio_invariant(merged, audio) == [(0, audio.size, "eof")]


def test_gate_with_webrtcvad_on_harmonic_bursts_over_steady_noise():
    rng = np.random.default_rng(5)

    def noise(n_frames: int) -> np.ndarray:
        return (rng.standard_normal(n_frames * F30) * 0.05).astype(np.float32)  # -26 dBFS

    # harmonic at about -7 dBFS (19 dB above the noise); noise gaps of 60 frames (1.8 s)
    audio = noise(100)
    for _ in range(3):
        audio = np.concatenate([audio, 3 * harmonic(40 * F30) + noise(40), noise(60)])
    gated = feed(Segmenter(VadConfig(noise_gate_db=10.0), SR), audio, rng)
    gated = check_audio_invariant(gated, audio)
    assert len(gated) == 3, gated
    for k, (s, e, _) in enumerate(gated):
        on = (100 + 100 * k) * F30  # burst k starts here and lasts 40 frames
        assert on - 10 * F30 - F30 <= s <= on and on + 40 * F30 <= e <= on + 56 * F30
    ungated = feed(Segmenter(VadConfig(noise_gate_db=0.0), SR), audio, rng)
    assert len(check_audio_invariant(ungated, audio)) == 1  # webrtcvad calls the noise speech


def test_gate_leaves_clean_input_unchanged():
    z = lambda n: np.zeros(n * F30, np.float32)  # noqa: E731
    audio = np.concatenate([z(40), harmonic(50 * F30), z(60), harmonic(40 * F30), z(20)])
    off, on10, on40 = [
        check_audio_invariant(feed(Segmenter(VadConfig(noise_gate_db=g), SR), audio, None), audio)
        for g in (0.0, 10.0, 40.0)
    ]
    # Pads: 10 frames. Gated, webrtcvad's own hangover frames over the digital silence no
    # longer count as speech, so the ends are exactly speech end + pad (ungated: later), plus
    # the one frame that the gate's high-pass filter rings into after the burst stops dead.
    assert on10 == on40 == [(30 * F30, 101 * F30, "silence"), (140 * F30, 201 * F30, "eof")]
    assert [(s, r) for s, _, r in off] == [(s, r) for s, _, r in on10]
    assert all(e0 <= e <= e0 + 6 * F30 for (_, e0, _), (_, e, _) in zip(on10, off, strict=True))


# ------------------------------------------------------------------ gate with hysteresis

NOISE, QUIET, LOUD = 0.01, 0.02, 0.2  # -40 dBFS; +6 dB: weak, not strong; +26 dB: strong
PAD = 10 * F30


def always(pcm: bytes) -> bool:
    """webrtcvad fooled by the noise: every frame is "speech", the gate alone decides."""
    return True


def command(quiet: int, gap: int, loud: int, quiet_first: bool = True) -> np.ndarray:
    """A quiet word and a loud part ``gap`` noise frames apart (frame counts)."""
    q, g, ld = square(quiet, QUIET), square(gap, NOISE), square(loud, LOUD)
    return np.concatenate([q, g, ld] if quiet_first else [ld, g, q])


def gated_utterances(audio: np.ndarray, rng: np.random.Generator | None = None,
                     gate_db: float = 10.0) -> tuple[list, list]:
    events = feed(Segmenter(VadConfig(noise_gate_db=gate_db), SR, is_speech=always), audio, rng)
    voiced = [(e.voiced_start_sample, e.voiced_end_sample) for e in events
              if isinstance(e, UtteranceEnd)]
    return check_audio_invariant(events, audio), voiced


def test_gate_start_is_the_quiet_first_word_minus_the_pad():
    # noise 0-199, quiet word 200-209, 2 noise frames, loud 212-241, noise
    audio = np.concatenate([square(200, NOISE), command(10, 2, 30), square(80, NOISE)])
    kept, voiced = gated_utterances(audio)
    # The plain gate started at the loud part: 212 * F30 - PAD.
    assert kept == [(200 * F30 - PAD, 242 * F30 + PAD, "silence")]
    assert voiced == [(200 * F30, 242 * F30)]


def test_gate_quiet_tail_stays_in_the_utterance():
    # loud 200-229, 2 noise frames, quiet word 232-241
    audio = np.concatenate([square(200, NOISE), command(10, 2, 30, quiet_first=False),
                            square(80, NOISE)])
    kept, voiced = gated_utterances(audio)
    assert kept == [(200 * F30 - PAD, 242 * F30 + PAD, "silence")]
    assert voiced == [(200 * F30, 242 * F30)]


def test_gate_two_commands_2s_apart_in_noise_stay_two_utterances():
    # commands at 200 and 309 (after 67 noise frames = 2.01 s), each quiet word first
    c = command(10, 2, 30)
    audio = np.concatenate([square(200, NOISE), c, square(67, NOISE), c, square(80, NOISE)])
    want = [(200 * F30 - PAD, 242 * F30 + PAD, "silence"),
            (309 * F30 - PAD, 351 * F30 + PAD, "silence")]
    for rng in (None, np.random.default_rng(11)):  # any block sizes: the same events
        kept, voiced = gated_utterances(audio, rng)
        assert kept == want
        assert voiced == [(200 * F30, 242 * F30), (309 * F30, 351 * F30)]
    assert gated_utterances(audio, gate_db=0.0)[0] == [(0, audio.size, "eof")]


GATE_10DB = VadConfig(noise_gate_db=10.0)  # the other defaults


def test_gate_steady_noise_alone_never_triggers():
    rng = np.random.default_rng(4)
    white = (rng.standard_normal(20 * SR) * 0.05).astype(np.float32)  # -26 dBFS, 20 s
    # slowly varying noise, 0-8 dB above its quietest frames, every 0.3 s a new level
    levels = np.repeat(10 ** (rng.uniform(0, 8, 67) / 20), 10 * F30)
    wobbly = (levels * rng.standard_normal(levels.size) * 0.01).astype(np.float32)
    for noise in (white, wobbly):
        assert feed(Segmenter(GATE_10DB, SR, is_speech=always), noise, rng) == []
    # with webrtcvad: it calls the noise speech (ungated: speech all along), the gate does not
    assert feed(Segmenter(GATE_10DB, SR), white, rng) == []
    ungated = feed(Segmenter(VadConfig(noise_gate_db=0.0), SR), white, rng)
    assert [(s, r) for s, _, r in check_audio_invariant(ungated, white)] == [
        (0, "max_length"), (15 * SR, "eof")]


def test_weak_margin_follows_the_noise_that_fools_the_vad():
    # floor exactly -40 dBFS (40% of the frames); noise frames 0, 0, 3, 6, 9 dB above it
    cycle = [-40.0, -40.0, -37.0, -34.0, -31.0]
    for vad_says, margin in ((False, WEAK_MIN_DB), (True, 9.0)):
        gate = NoiseGate(10.0, 30, noise_delay_frames=44)
        assert gate.weak_margin_db == WEAK_MIN_DB
        strong = [k for k in range(300) if gate.judge(k, vad_says, cycle[k % 5], idle=True)[0]]
        assert strong == ([0] if vad_says else [])  # frame 0 meets the absolute floor only
        assert gate.weak_margin_db == margin
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    for k in range(300):  # fooling noise louder than the gate: the margin stops at the gate
        gate.judge(k, True, [-40.0, -40.0, -36.0, -32.0, -28.0][k % 5], idle=True)
    assert gate.weak_margin_db == 10.0


def test_strong_margin_rises_over_the_noise_that_fools_the_vad():
    # Babble peaks beat a fixed 10 dB gate often enough to hold commands open (generated
    # calls: 73-78% one-to-one); strong evidence must clear them by STRONG_OVER_FOOLED_DB.
    cycle = [-40.0, -40.0, -37.0, -34.0, -31.0]  # floor -40 dBFS, fooled level 9 dB
    quiet = NoiseGate(10.0, 30, noise_delay_frames=44)
    for k in range(300):
        quiet.judge(k, False, cycle[k % 5], idle=True)  # webrtcvad not fooled
    assert quiet.strong_margin_db == 10.0 and quiet.steady
    assert quiet.judge(300, True, -29.0, idle=False) == (True, True)  # 11 dB above the floor
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    for k in range(300):
        gate.judge(k, True, cycle[k % 5], idle=True)
    assert gate.strong_margin_db == 9.0 + STRONG_OVER_FOOLED_DB == 13.0 and not gate.steady
    assert gate.judge(300, True, -29.0, idle=False) == (False, True)  # 11 dB: weak only
    assert gate.judge(301, True, -26.5, idle=False) == (True, True)  # 13.5 dB
    assert gate.judge(302, False, -20.0, idle=False) == (False, False)  # webrtcvad: no speech


def test_strong_margin_rises_with_the_fooled_level_only_up_to_a_cap():
    # Missed commands are learnt as noise; an uncapped margin then climbs over the next ones.
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    for k in range(300):  # fooling noise up to 20 dB above the floor
        gate.judge(k, True, [-40.0, -40.0, -35.0, -30.0, -20.0][k % 5], idle=True)
    assert gate.fooled.level_db == 20.0
    assert gate.strong_margin_db == 10.0 + STRONG_MAX_OVER_GATE_DB == 16.0
    assert gate.judge(300, True, -23.0, idle=False) == (True, True)  # 17 dB above the floor


def test_a_command_after_loud_fooling_noise_is_still_found():
    # 9 s of noise that fools webrtcvad with single-frame peaks 20 dB over the floor (as when
    # a missed command was learnt as noise), then a talker 18 dB over the floor for 1 s. An
    # uncapped margin (20 + 4 dB) would never let the talker start an utterance.
    cycle = np.concatenate([square(4, NOISE), square(1, 10 * NOISE)])
    noise = np.concatenate([np.tile(cycle, 60), square(10, NOISE)])
    talk = square(34, 7.94 * NOISE)
    _, voiced = gated_utterances(np.concatenate([noise, talk, square(80, NOISE)]))
    assert voiced == [(noise.size, noise.size + talk.size)]


def test_noise_is_steady_only_after_steady_min_s_of_it():
    # 30 ms frames: 34 noise frames make 1 s; each idle frame becomes noise 44 frames later
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    assert STEADY_MIN_S == 1.0 and not gate.steady  # nothing heard yet: babble or not?
    for k in range(44 + 33):
        gate.judge(k, False, -40.0, idle=True)
    assert gate.fooled.frames == 33 and not gate.steady
    gate.judge(77, False, -40.0, idle=True)
    assert gate.fooled.frames == 34 and gate.steady


def test_noise_gate_counts_idle_frames_before_an_onset_as_noise():
    gate = NoiseGate(10.0, 30, noise_delay_frames=100)
    for k in range(50):  # at the floor (the first frame sets it), webrtcvad fooled
        gate.judge(k, True, -40.0, idle=True)
    assert gate.fooled.level_db == -np.inf  # still within reach of a future onset
    gate.onset_at(40)  # frames 0-39 were noise, 40-49 belong to the utterance
    assert gate.fooled.level_db == 0.0
    fl = FooledLevel(30, window_s=0.6)  # 20 frames: the 90th percentile is the 19th value
    for _ in range(19):
        fl.add(False, 20.0)  # loud, but webrtcvad was not fooled: it does not count
    fl.add(True, 7.0)
    assert fl.level_db == -np.inf  # 1 frame in 20 fooled webrtcvad
    fl.add(True, 4.0)
    assert fl.level_db == 4.0  # 2 in 20: only 10% of the noise is above 4 dB and fooling
