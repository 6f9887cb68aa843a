"""CMU Flite speech (the ``flite`` command from Debian's ``flite`` package).

Flite's voices are a different synthesis family from eSpeak's formant voices: ``slt``, ``rms``
and ``awb`` are statistical parametric (clustergen) voices trained on recordings of real
speakers (US female, US male, Scottish male), ``kal16`` a diphone voice cut from a real
speaker's recordings. Few speakers, but human timbres that no eSpeak variant has, which is
what a classifier trained on synthetic speech needs to hear before it meets people.

Each utterance runs one ``flite`` process (~70 ms for a 3 s command), which is deterministic:
the same text, voice, pitch and stretch give the same samples in any process.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intentd.daemon.errors import DataError

# (voice, habitual pitch in Hz or 0 where flite ignores a pitch target)
VOICES: tuple[tuple[str, float], ...] = (("slt", 172.0), ("awb", 134.0), ("rms", 0.0),
                                         ("kal16", 99.0))
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FliteSpeaker:
    """One flite voice at a habitual pitch (Hz; 0 = the voice's own) and speaking rate
    (``duration_stretch``: > 1 is slower)."""

    voice: str
    pitch_hz: float
    stretch: float

    @property
    def voice_id(self) -> str:
        return f"flite:{self.voice}"


def speakers(rng: random.Random, n: int, start: int = 0) -> list[FliteSpeaker]:
    """``n`` speakers cycling through the voices from voice ``start``, each at a random pitch
    (±20% of the voice's own) and rate (0.85-1.25 stretch), so four voices give many
    habits."""
    out = []
    for i in range(start, start + n):
        voice, f0 = VOICES[i % len(VOICES)]
        pitch = round(f0 * rng.uniform(0.8, 1.2), 1) if f0 else 0.0
        out.append(FliteSpeaker(voice, pitch, round(rng.uniform(0.85, 1.25), 3)))
    return out


def available() -> bool:
    return shutil.which("flite") is not None


def speak(text: str, speaker: FliteSpeaker, sample_rate_hz: int = 16000) -> np.ndarray:
    """Float32 mono audio at ``sample_rate_hz``."""
    import soundfile as sf

    from intentd.daemon.audio.windowing import preprocess

    exe = shutil.which("flite")
    if exe is None:
        raise DataError("flite is not installed; apt-get install flite, or pass "
                        "--flite-share 0")
    args = [exe, "-voice", speaker.voice, "--setf", f"duration_stretch={speaker.stretch}"]
    if speaker.pitch_hz:
        args += ["--setf", f"int_f0_target_mean={speaker.pitch_hz}"]
    with tempfile.TemporaryDirectory(prefix="intentd-flite-") as tmp:
        wav = Path(tmp) / "u.wav"
        try:
            subprocess.run([*args, "-t", text, "-o", str(wav)], check=True,
                           capture_output=True, timeout=_TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            raise DataError(f"flite failed on {text!r} with voice {speaker.voice}: "
                            f"{exc.stderr.decode(errors='replace').strip()}") from None
        except subprocess.TimeoutExpired:
            raise DataError(f"flite took over {_TIMEOUT_S:.0f} s on {text!r}") from None
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=False)
    return preprocess(np.asarray(audio, dtype=np.float32), int(rate), sample_rate_hz)
