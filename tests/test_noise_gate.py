"""The noise gate's strong margin in noise that fools webrtcvad (babble)."""

from __future__ import annotations

import numpy as np

from daemon.config import VadConfig
from daemon.noisefloor import STRONG_MAX_OVER_GATE_DB, NoiseGate
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
    audio = np.concatenate([noise, talk, square(80, NOISE)])
    seg = Segmenter(VadConfig(noise_gate_db=10.0), SR, is_speech=always)
    events = []
    for i in range(0, audio.size, F30):
        events += seg.process(audio[i : i + F30])
    events += seg.flush()
    ends = [(e.voiced_start_sample, e.voiced_end_sample) for e in events
            if isinstance(e, UtteranceEnd)]
    assert ends == [(noise.size, noise.size + talk.size)]
