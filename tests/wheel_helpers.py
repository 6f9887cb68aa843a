"""Build intentd's wheel from a copy of the checkout, so that the build leaves nothing
(build/, *.egg-info) in the working tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SKIP = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
         ".ruff_cache", "demo", "runs", "out")


def build_wheel(work: Path) -> Path:
    src = Path(shutil.copytree(REPO, work / "src", ignore=shutil.ignore_patterns(*_SKIP)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(work / "dist"), str(src)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (work / "dist").glob("intentd-*.whl")
    return wheel
