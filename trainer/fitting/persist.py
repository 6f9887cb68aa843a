"""Where a fit run's weights go besides OUT: its checkpoints (resume) and the Hub (push)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from intentd.daemon.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def readable_by_all(model_dir: Path) -> None:
    """Give the model dir's top-level files the permissions the umask allows (0644 under the
    usual 022). transformers writes the weights through a private temporary file (0600), and
    a service that runs as another user would then fail to read them."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for f in model_dir.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~mask)


def resume_checkpoint(ckpt_dir: Path, resume: bool) -> str | None:
    if not resume:
        stale = sorted(ckpt_dir.glob("checkpoint-*")) if ckpt_dir.is_dir() else []
        if stale:
            # Mixing them with this run's checkpoints would confuse rotation and --resume.
            log.warning("not resuming: removing %d checkpoint(s) of an earlier run in %s",
                        len(stale), ckpt_dir)
            for d in stale:
                shutil.rmtree(d)
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last is None:
        log.warning("--resume: no checkpoint in %s, training from scratch", ckpt_dir)
    else:
        log.info("resuming from %s", last)
    return last


# What fixes the shapes of the weights: a checkpoint that differs in one of these cannot be
# loaded into this run's model.
_SHAPE_KEYS: tuple[tuple[str, str], ...] = (
    ("hidden_size", "--head-channels"), ("frontend", "--frontend"),
    ("embedding_dim", "--frontend"), ("head_type", "the head type"),
    ("num_labels", "the data's label set"))


def check_resumable(checkpoint: str | None, config: dict[str, Any]) -> None:
    """A one-line error when ``checkpoint`` was trained with another model shape than
    ``config`` (this run's model config), instead of a wall of size mismatches."""
    if checkpoint is None:
        return
    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the trainer reports a damaged checkpoint itself
    for key, flag in _SHAPE_KEYS:
        if key in saved and key in config and saved[key] != config[key]:
            raise ConfigError(
                f"--resume: {checkpoint} was trained with {key}={saved[key]!r}, this run "
                f"asks for {config[key]!r} ({flag}); run with the checkpoint's settings, or "
                "without --resume to start afresh")


def push_to_hub(out: Path, repo_id: str) -> None:
    from huggingface_hub import create_repo, upload_folder

    try:
        create_repo(repo_id, exist_ok=True)
        upload_folder(repo_id=repo_id, folder_path=str(out),
                      ignore_patterns=["checkpoints/*", "cache/*"])
    except Exception as err:  # network/auth errors come in many types
        raise DataError(f"--push-to-hub {repo_id}: upload failed ({err}); the model is saved "
                        f"in {out}") from err
    log.info("pushed %s to https://huggingface.co/%s", out, repo_id)
