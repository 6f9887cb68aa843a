"""eSpeak NG speech through ctypes on the library shipped by ``espeakng-loader``.

libespeak-ng keeps global state (current voice, parameters, callback), so one
:class:`EspeakEngine` exists per process (:func:`engine`); parallel synthesis uses
processes, never threads. Speakers are English accents × voice variants; each speaker
has its own habitual rate and pitch, jittered a little per utterance.

Reproducibility: the waveform generator keeps static state across utterances (pitch
flutter phase, echo buffer), so the same call gives different samples depending on what
was spoken before, and noise comes from libc ``rand()``. :func:`speak` therefore reseeds
``rand`` and reloads the library (dlclose + dlopen, ~10 ms)
before each utterance unless ``fresh=False``; a fixed *sequence* of calls after one reload
is reproducible too.
"""

from __future__ import annotations

import ctypes
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intentd.daemon.errors import DataError
from intentd.trainer.synthesis import espeak_timbres

SOURCE_RATE_HZ = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4

# English accents shipped with espeak-ng (lang/gmw); en-Shaw (Shavian script) is left out.
ACCENTS: tuple[str, ...] = (
    "en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)
# Variants that sound like people; robotic/whispering/novelty ones are excluded because
# they would teach the model sounds no user makes.
HUMAN_VARIANTS: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "adam", "anika", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa",
    "gustave", "Henrique", "Hugo", "ian", "iven", "Jacky", "john", "Lee", "linda", "Mario",
    "max", "Michael", "michel", "Mike", "norbert", "paul", "quincy", "Reed", "rob",
    "robert", "shelby", "steph", "travis", "antonio", "Denis", "Diogo", "marcelo", "miguel",
    "pablo", "pedro", "sandro", "klatt", "klatt2", "klatt3",
)


@dataclass(frozen=True)
class EspeakSpeaker:
    """One synthetic speaker: accent + variant + habitual rate (wpm) and pitch (0-100)."""

    accent: str
    variant: str
    rate_wpm: int
    pitch: int
    pitch_range: int

    @property
    def voice_name(self) -> str:
        return f"{self.accent}+{self.variant}"

    @property
    def voice_id(self) -> str:
        return f"espeak:{self.voice_name}:r{self.rate_wpm}:p{self.pitch}"


def data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def _breathy(path: Path) -> bool:
    """Whether a variant adds breath noise, which libespeak-ng renders differently in
    every process (not reproducible), so such variants are not used."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("//")[0].split()
        if parts and parts[0] == "breath" and any(
            p.lstrip("-").isdigit() and int(p) != 0 for p in parts[1:]
        ):
            return True
    return False


def available_variants() -> list[str]:
    """The human-sounding, reproducible variants present in this espeak-ng data dir."""
    vdir = data_path() / "voices" / "!v"
    present = {p.name for p in vdir.iterdir()} if vdir.is_dir() else set()
    return [v for v in HUMAN_VARIANTS if v in present and not _breathy(vdir / v)]


def available_accents() -> list[str]:
    gmw = data_path() / "lang" / "gmw"
    present = {p.name.lower() for p in gmw.iterdir()} if gmw.is_dir() else set()
    return [a for a in ACCENTS if a in present]


def all_speakers(seed: int = 0) -> list[EspeakSpeaker]:
    """Every accent × variant, each with a habitual rate/pitch fixed by ``seed``.

    Sorted by voice name so the list (and any split of it) depends only on the seed.
    """
    out = [_with_habits(accent, variant, f"{seed}:{accent}+{variant}")
           for accent in available_accents() for variant in available_variants()]
    return sorted(out, key=lambda s: s.voice_name)


def _with_habits(accent: str, variant: str, key: str) -> EspeakSpeaker:
    """A speaker whose habitual rate and pitch are drawn from ``key`` alone."""
    r = random.Random(f"espeak-speaker:{key}")
    return EspeakSpeaker(accent, variant, rate_wpm=r.randint(135, 195),
                         pitch=r.randint(30, 70), pitch_range=r.randint(35, 75))


def generated_speakers(seed: int, n: int, accents: tuple[str, ...] = ()) -> list[EspeakSpeaker]:
    """``n`` speakers with generated timbres (:mod:`intentd.trainer.synthesis.espeak_timbres`), the
    accents (default: all) taken in turn, each with a habitual rate/pitch like
    :func:`all_speakers`."""
    pool = [a for a in available_accents() if not accents or a in accents]
    names = [espeak_timbres.name(seed, i) for i in range(n)]
    return [_with_habits(pool[i % len(pool)], v, f"{seed}:{v}") for i, v in enumerate(names)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class EspeakEngine:
    """The process's handle on libespeak-ng; use :func:`engine` rather than constructing."""

    def __init__(self, root: Path | None = None) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        self.root = root if root is not None else data_path().parent
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.root).encode(), 0)
        if rate <= 0:
            raise DataError(f"espeak-ng failed to initialize with data in {data_path()}; "
                            "reinstall espeakng-loader")
        self.sample_rate_hz = rate
        self._chunks: list[np.ndarray] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._cb)
        self._voice: str | None = None
        self._pid = os.getpid()

    def _on_audio(self, wav: ctypes.POINTER(ctypes.c_short), n: int, _events: int) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice_name: str, rate_wpm: int = 175, pitch: int = 50,
              pitch_range: int = 50, volume: int = 100) -> np.ndarray:
        """int16 samples at :attr:`sample_rate_hz` for ``text`` spoken by ``voice_name``."""
        lib = self._lib
        if voice_name != self._voice:
            if lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
                raise DataError(f"espeak-ng has no voice {voice_name!r}")
            self._voice = voice_name
        lib.espeak_SetParameter(_ESPEAK_RATE, int(rate_wpm), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, int(pitch_range), 0)
        lib.espeak_SetParameter(_ESPEAK_VOLUME, int(volume), 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != 0:
            raise DataError(f"espeak-ng failed (code {err}) on text {text!r}")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


    def close(self) -> None:
        """Terminate and unload the library so the next engine starts from clean statics."""
        import _ctypes

        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)


_ENGINE: EspeakEngine | None = None
_ENGINE_LOCK = threading.RLock()


def engine(root: Path | None = None) -> EspeakEngine:
    """This process's engine (re-created after fork, since the library state is per process).

    ``root``: the directory holding ``espeak-ng-data`` (default: the shipped one)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None or _ENGINE._pid != os.getpid():
            _ENGINE = EspeakEngine(root)
        elif root is not None and _ENGINE.root != root:
            _ENGINE.close()
            _ENGINE = EspeakEngine(root)
        return _ENGINE


def reset(root: Path | None = None) -> EspeakEngine:
    """A freshly loaded engine: output from here on depends only on the calls that follow."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is not None:
            # Also an engine inherited through fork: its library copy is loaded in this
            # process too, and dlopen would just hand back that copy with its old state.
            _ENGINE.close()
        _ENGINE = None
        # Breath/aspiration noise comes from libc rand(), whose state is process-wide.
        ctypes.CDLL("libc.so.6").srand(1)
        return engine(root)


def speak(text: str, speaker: EspeakSpeaker, rng: random.Random | None = None,
          sample_rate_hz: int = 16000, fresh: bool = True) -> np.ndarray:
    """Float32 mono audio at ``sample_rate_hz``; ``rng`` adds per-utterance rate/pitch jitter.

    ``fresh`` reloads the library first so the result does not depend on earlier calls.
    """
    from intentd.daemon.audio.windowing import preprocess

    rate, pitch, rng_range = speaker.rate_wpm, speaker.pitch, speaker.pitch_range
    if rng is not None:
        rate = round(rate * rng.uniform(0.9, 1.1))
        pitch = min(99, max(0, pitch + rng.randint(-6, 6)))
        rng_range = min(99, max(0, rng_range + rng.randint(-10, 10)))
    with _ENGINE_LOCK:  # the library is not thread-safe, nor is the overlay's one variant
        # A generated timbre's file lives in an overlay of the data dir (espeak_timbres).
        root = (espeak_timbres.ensure(speaker.variant, data_path())
                if espeak_timbres.is_generated(speaker.variant) else None)
        eng = reset(root) if fresh else engine(root)
        pcm = eng.synth(text, speaker.voice_name, rate, pitch, rng_range)
    return preprocess(pcm, eng.sample_rate_hz, sample_rate_hz)
