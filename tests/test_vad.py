"""VAD state machine: exact frame indices of its events on synthetic flag sequences."""

from __future__ import annotations

from intentd.daemon.audio.vad import TRIGGER_MIN_STRONG, VadEvent, VadStateMachine
from intentd.daemon.config import VadConfig

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
