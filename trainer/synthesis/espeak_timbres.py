"""Generated eSpeak NG timbres: voice variants drawn at random, for training only.

eSpeak's shipped English variants are ~60 hand-made timbres, and the split holds a fifth of
them out, so training hears ~48. A variant file is just numbers (formant frequencies,
strengths and widths, pitch range, tone, flutter, roughness, voicing, the Klatt
synthesizer or not), so any number of new timbres can be drawn from the ranges the shipped
files span: more speakers for the head to generalise from, at no cost per utterance. They
go to training only; the test split keeps the shipped held-out variants, so held-out
figures stay comparable.

A generated variant's file is a pure function of its name (``intentd-gen-SEED-INDEX``), so
any process can write it. libespeak-ng reads variants only from its data directory, which
belongs to the installed package, so the file goes into a per-process overlay directory in
``$TMPDIR``: symlinks to every shipped file plus the generated variant in use.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

from intentd.daemon.errors import DataError

PREFIX = "intentd-gen-"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)$")


def name(seed: int, index: int) -> str:
    """The variant name of generated timbre ``index`` of ``seed`` (use as ``accent+name``)."""
    return f"{PREFIX}{seed}-{index}"


def is_generated(variant: str) -> bool:
    return _NAME.match(variant) is not None


def variant_text(variant: str) -> str:
    """The eSpeak variant file of a generated timbre (deterministic in its name)."""
    m = _NAME.match(variant)
    if m is None:
        raise DataError(f"{variant!r} is not a generated eSpeak timbre")
    r = random.Random(f"espeak-timbre:{m.group(1)}:{m.group(2)}")
    female = r.random() < 0.45
    base = r.randint(140, 240) if female else r.randint(65, 130)
    top = base + (r.randint(30, 120) if female else r.randint(20, 90))
    # Vowel formants scale together with vocal-tract length, plus a little of their own.
    tract = r.uniform(0.95, 1.2) if female else r.uniform(0.85, 1.08)
    lines = ["language variant", f"name {variant}", f"gender {'female' if female else 'male'}",
             f"pitch {base} {top}",
             f"formant 0 {r.randint(80, 120)} {r.randint(60, 200)} {r.randint(60, 150)}"]
    for n in (1, 2, 3):
        freq = round(100 * tract * r.uniform(0.94, 1.06))
        lines.append(f"formant {n} {freq} {r.randint(50, 150)} {r.randint(50, 150)}")
    for n in (4, 5):
        lines.append(f"formant {n} {r.randint(80, 125)} {r.randint(30, 150)} "
                     f"{r.randint(60, 150)}")
    for n in (6, 7, 8):
        lines.append(f"formant {n} {r.randint(80, 120)} {r.randint(0, 120)} "
                     f"{r.randint(60, 150)}")
    lines += [
        f"tone {r.randint(200, 900)} {r.randint(60, 255)} {r.randint(1000, 1800)} "
        f"{r.randint(60, 255)} {r.randint(2000, 4000)} {r.randint(60, 255)}",
        f"flutter {min(r.randint(0, 20), r.randint(0, 20))}",
        f"roughness {r.choice((0, 0, 0, 1, 2, 3, 4, 5))}",
        f"voicing {r.randint(60, 160)}",
        f"consonants {r.randint(50, 120)} {r.randint(40, 120)}",
        f"intonation {r.choice((1, 1, 2, 3))}",
    ]
    if r.random() < 0.2:
        lines.append(f"klatt {r.randint(1, 6)}")
    if r.random() < 0.25:
        lines.append(f"echo {r.randint(10, 60)} {r.randint(5, 25)}")
    return "\n".join(lines) + "\n"


def overlay_root(shipped_data: Path) -> Path:
    """This process's directory whose ``espeak-ng-data`` mirrors ``shipped_data`` (by
    symlinks) and can take a generated variant.

    One per process: libespeak-ng lists every voice file at start-up and stops at 350, so a
    shared directory of hundreds of generated variants would push the accents themselves
    out of its list. Each process's ``!v`` therefore holds the shipped variants plus the one
    generated variant in use. Directories of processes that have exited are removed."""
    key = hashlib.sha1(str(shipped_data.resolve()).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"intentd-espeak-{os.getuid()}-{key}"
    root = base / f"p{os.getpid()}"
    if (root / "espeak-ng-data" / "voices" / "!v").is_dir():
        return root
    base.mkdir(parents=True, exist_ok=True)
    _prune(base)
    shutil.rmtree(root, ignore_errors=True)  # a dead process's leftovers under a reused pid
    staging = base / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    data = staging / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in shipped_data.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry.resolve())
    for entry in (shipped_data / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry.resolve())
    for entry in (shipped_data / "voices" / "!v").iterdir():
        (data / "voices" / "!v" / entry.name).symlink_to(entry.resolve())
    staging.rename(root)
    return root


def ensure(variant: str, shipped_data: Path) -> Path:
    """This process's overlay root, holding ``variant``'s file and no other generated one."""
    root = overlay_root(shipped_data)
    vdir = root / "espeak-ng-data" / "voices" / "!v"
    for old in vdir.glob(f"{PREFIX}*"):
        if old.name != variant:
            old.unlink(missing_ok=True)
    path = vdir / variant
    if not path.is_file():
        tmp = vdir / f".{variant}.tmp"
        tmp.write_text(variant_text(variant), encoding="utf-8")
        os.replace(tmp, path)
    return root


def _prune(base: Path) -> None:
    for d in base.iterdir():
        pid = d.name.removeprefix("staging-").removeprefix("p")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
