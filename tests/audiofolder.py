"""Writes small audiofolder data sets (the synth/fit format) for tests."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

RATE_HZ = 16000


def write_split(root: Path, split: str,
                rows: Iterable[tuple[str, str, str, np.ndarray | None]]) -> Path:
    """``root/split/`` with ``metadata.csv`` (``file_name,label,text,voice``; text = label)
    and a 16 kHz PCM16 wav for every row ``(file_name, label, voice, audio)`` whose audio is
    not None (rows without audio name files that are missing on purpose)."""
    d = root / split
    d.mkdir(parents=True)
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "label", "text", "voice"])
        for name, label, voice, audio in rows:
            if audio is not None:
                sf.write(d / name, np.asarray(audio, np.float32), RATE_HZ, subtype="PCM_16")
            w.writerow([name, label, label, voice])
    return root
