"""intentd daemon: streaming speech-to-intent recognition.

Importing this package makes the transformers Auto classes (AutoConfig,
AutoModelForAudioClassification, AutoFeatureExtractor, and so ``pipeline()``) know the
compact model, without paying for torch + transformers up front: registration happens the
moment transformers itself is imported (or now, if it already is). That keeps light entry
points (``intentd --help``, config errors, ``--list-devices``) fast.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"


def _register_compact() -> None:
    # A partially imported daemon.compact registers itself when its import completes.
    if "daemon.compact" not in sys.modules:
        import daemon.compact  # noqa: F401


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module: ModuleType) -> None:
            exec_module(module)
            _register_compact()

        spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


if "transformers" in sys.modules:
    _register_compact()
elif not any(isinstance(f, _RegisterAfterTransformers) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
