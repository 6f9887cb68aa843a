"""The noise gate before it has heard the noise: a stream that starts in babble."""

from __future__ import annotations

import numpy as np

from daemon.config import VadConfig
from daemon.noisefloor import (
    STRONG_MAX_OVER_GATE_DB,
    STRONG_OVER_FOOLED_DB,
    UNHEARD_EXTRA_DB,
    NoiseGate,
)
from daemon.segmenter import Segmenter, UtteranceEnd

SR = 16000
F30 = 480  # samples per 30 ms frame
NOISE, PEAK, LOUD = 0.01, 0.04, 0.2  # -40 dBFS; +12 dB (a babble peak); +26 dB (a talker)


def square(n_frames: int, amp: float) -> np.ndarray:
    """Alternating +-amp: every frame has energy exactly 20*log10(amp) dBFS."""
    n = n_frames * F30
    return (amp * np.where(np.arange(n) % 2, 1.0, -1.0)).astype(np.float32)


def always(pcm: bytes) -> bool:
    """webrtcvad fooled by babble: every frame is "speech", the gate alone decides."""
    return True


def test_strong_margin_is_raised_until_the_noise_is_heard():
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    assert not gate.heard and gate.strong_margin_db == 10.0 + UNHEARD_EXTRA_DB == 14.0
    # Frame 0 sets the floor (-40 dBFS); 12 dB peaks clear the 10 dB gate, not the raised one.
    cycle = [-40.0, -40.0, -40.0, -34.0, -28.0]
    strong = [k for k in range(78) if gate.judge(k, True, cycle[k % 5], idle=True)[0]]
    assert strong == [0]  # 30 dB above the absolute floor before anything was heard
    # 44 frames' delay + 34 frames (1 s) of noise: heard. The fooled level is the 90th
    # percentile of the peaks, 12 dB, so the margin is set by it from now on.
    assert gate.heard and gate.fooled.frames == 34
    assert gate.strong_margin_db == 12.0 + STRONG_OVER_FOOLED_DB


def test_a_stream_that_starts_in_babble_does_not_swallow_the_first_command():
    # Babble-like: 300 ms stretches 12 dB above the floor, every 600 ms, from the first
    # sample; then a talker at +26 dB (1 s), then babble again.
    babble = np.concatenate([square(10, PEAK), square(10, NOISE)] * 15)  # 9 s
    talk = square(34, LOUD)
    audio = np.concatenate([babble, talk, babble[::-1]])  # quiet stretches next to the talker
    events = []
    seg = Segmenter(VadConfig(noise_gate_db=10.0), SR, is_speech=always)
    for i in range(0, audio.size, F30):
        events += seg.process(audio[i : i + F30])
    events += seg.flush()
    ends = [(e.voiced_start_sample, e.voiced_end_sample) for e in events
            if isinstance(e, UtteranceEnd)]
    # Under a plain 10 dB margin the first peak opened an utterance at once and the peaks held
    # it open until max_utterance_s, the talker inside it.
    assert ends == [(babble.size, babble.size + talk.size)]


def test_strong_margin_rises_with_the_fooled_level_only_up_to_a_cap():
    # Missed commands are learnt as noise; an uncapped margin then climbs over the next ones.
    gate = NoiseGate(10.0, 30, noise_delay_frames=44)
    for k in range(300):  # fooling noise up to 20 dB above the floor
        gate.judge(k, True, [-40.0, -40.0, -35.0, -30.0, -20.0][k % 5], idle=True)
    assert gate.fooled.level_db == 20.0
    assert gate.strong_margin_db == 10.0 + STRONG_MAX_OVER_GATE_DB == 16.0
    assert gate.judge(300, True, -23.0, idle=False) == (True, True)  # 17 dB above the floor
