"""The VAD noise gate (intentd.daemon.audio.noise_gate): noise floor, gate energy, fooled level,
strong and weak margins, and the Segmenter's boundaries with the gate on."""

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

from intentd.daemon.audio.highpass import Highpass, butter2_highpass
from intentd.daemon.audio.noise_gate import (
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
from intentd.daemon.audio.segmenter import Segmenter, UtteranceEnd
from intentd.daemon.config import VadConfig


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


def test_gate_splits_bursts_over_noise_that_the_vad_calls_speech():
    # Stand-in for webrtcvad under steady noise: every frame is "speech". Noise at -40 dBFS,
    # bursts at -14 dBFS (26 dB above), 60-frame (1.8 s) noise gaps > 44-frame hangover.
    noise, burst = (lambda n: square(n, 0.01)), (lambda n: square(n, 0.2))
    audio = np.concatenate([noise(40), burst(40), noise(60), burst(40), noise(60)])
    gated = feed(Segmenter(VadConfig(noise_gate_db=10.0), SR, is_speech=always), audio, None)
    assert check_audio_invariant(gated, audio) == [
        (40 * F30 - PAD, 80 * F30 + PAD, "silence"),
        (140 * F30 - PAD, 180 * F30 + PAD, "silence"),
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


def test_an_overlong_utterance_begun_before_the_noise_was_heard_is_learnt_as_noise():
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    gate.onset_at(0)  # no noise heard (34 frames make 1 s): does it fool the VAD?
    for k in range(200):
        gate.judge(k, True, [-40.0, -40.0, -40.0, -40.0, -26.0][k % 5], idle=False)
    assert gate.fooled.level_db == -np.inf  # noise is only learnt while idle
    gate.overlong()
    # the last 5 s (167 frames) of the utterance: 20% of its frames 14 dB over the floor
    assert gate.fooled.frames == 167 and gate.fooled.level_db == 14.0
    assert gate.strong_margin_db == 16.0
    gate.onset_at(250)  # noise was heard before this one: forcing it to split learns nothing
    gate.judge(250, True, -10.0, idle=False)
    gate.overlong()
    assert gate.fooled.frames == 167


def test_a_stream_that_starts_in_fooling_noise_learns_it_at_the_first_forced_split():
    # Babble over a quiet room: webrtcvad calls its peaks (14 dB over the floor, 2 frames in
    # 10; the 8 frames between are too many to bridge) speech. A burst opens an utterance
    # before 1 s of noise has been heard, and the peaks hold it open to max_utterance_s
    # (3 s); without learning at that forced split they hold every later utterance open
    # too, and a talker 26 dB over the floor at 9 s is swallowed into one. Learnt, the
    # talker gets an utterance of its own with exact bounds.
    cycle = np.concatenate([square(8, NOISE), square(2, 5 * NOISE)])
    # The burst's length puts peaks at frames 99-100: the forced split lands on a voiced
    # frame, so without learning the next utterance starts at once, and so on.
    lead = np.concatenate([square(10, NOISE), square(11, 5 * NOISE)])
    noise = np.concatenate([lead, np.tile(cycle, 27), square(9, NOISE)])  # 300 frames = 9 s
    talk = square(30, LOUD)
    audio = np.concatenate([noise, talk, np.tile(cycle, 30)])
    # amplitude_vad: fooled by the peaks (1638), not by NOISE (328)
    seg = Segmenter(VadConfig(noise_gate_db=10.0, max_utterance_s=3.0), SR,
                    is_speech=amplitude_vad)
    events = feed(seg, audio, np.random.default_rng(2))
    kept = check_audio_invariant(events, audio)
    # Before: six utterances held to the limit, the talker's from 9 s to 12 s.
    assert kept == [(0, 100 * F30, "max_length"),
                    (noise.size - PAD, noise.size + talk.size + PAD, "silence")]


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_highpass_equals_scipy_sosfilt_across_blocks(rate: int):
    """The numpy biquad (no scipy in the daemon) is scipy's Butterworth sosfilt."""
    from scipy.signal import butter, sosfilt

    sos = butter(2, GATE_HIGHPASS_HZ, btype="highpass", fs=rate, output="sos")
    b, a = butter2_highpass(GATE_HIGHPASS_HZ, rate)
    np.testing.assert_allclose(sos[0], [*b, 1.0, *a], rtol=0, atol=1e-14)
    x = np.random.default_rng(rate).standard_normal(rate * 3) * 0.3
    x[rate : rate + 100] = 0.99  # a step, so the state carried across blocks matters
    hp, zi, got, ref = Highpass(GATE_HIGHPASS_HZ, rate), np.zeros((1, 2)), [], []
    rng, i = np.random.default_rng(1), 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        got.append(hp.filter(x[i : i + n]))
        r, zi = sosfilt(sos, x[i : i + n], zi=zi)
        ref.append(r)
        i += n
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(ref), rtol=0, atol=1e-12)
    assert hp.filter(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="cutoff"):
        Highpass(rate, rate)
