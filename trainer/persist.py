"""Where a fit run's weights go besides OUT: its checkpoints (resume) and the Hub (push)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from daemon.errors import DataError

log = logging.getLogger(__name__)


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
