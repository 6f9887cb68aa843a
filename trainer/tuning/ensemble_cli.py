"""``intentd-train ensemble``: one model dir whose verdicts average several models'.

Each member is loaded as the daemon would load it (so a broken or mismatched member fails
here, not at the daemon's start), then copied into ``OUT/members/`` and named in
``OUT/config.json`` (:mod:`intentd.daemon.model.ensemble`). The copy is written beside ``OUT`` and
renamed once complete, so an interrupted run leaves no half ensemble.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from intentd.daemon.errors import ConfigError, DataError
from intentd.daemon.model import ensemble

log = logging.getLogger(__name__)


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, action="append", type=Path, metavar="DIR",
                        help="a member model dir (repeat: at least 2; the same labels)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="new ensemble model dir (members are copied in)")


def check_member_dirs(models: list[Path], out: Path, what: str, twice: str) -> None:
    """At least two distinct members, and an ``out`` that is new and outside them (``what``
    names the result in messages, ``twice`` says why a repeated member is refused)."""
    if len(models) < 2:
        raise ConfigError(f"{what} needs at least 2 --model dirs, got {len(models)}")
    if len({m.resolve() for m in models}) < len(models):
        raise ConfigError(f"the same --model dir is given twice; {twice}")
    if out.exists():
        raise DataError(f"{out}: already exists; choose another --out or remove it")
    for m in models:
        if out.resolve().is_relative_to(m.resolve()):
            raise ConfigError(f"--out {out} is inside member {m}; write it elsewhere")


def build_ensemble(models: list[Path], out: Path) -> dict[str, object]:
    """Check ``models`` load and agree, then write the ensemble dir ``out``."""
    from intentd.daemon.model.loader import load_backend, read_config

    check_member_dirs(models, out, "an ensemble", "an ensemble of one model twice gives "
                      "that model's verdicts at twice the cost")
    for m in models:  # every dir a model, before seconds of loading
        if read_config(m)["model_type"] == ensemble.MODEL_TYPE:
            raise ConfigError(f"{m} is itself an ensemble; pass its members as --model")
    backends = [load_backend(m, threads=1) for m in models]
    checked = ensemble.EnsembleBackend(backends, out.name)  # one label map, one rate
    names = [f"{i}-{m.resolve().name}" for i, m in enumerate(models)]
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    (partial / ensemble.MEMBERS_SUBDIR).mkdir(parents=True)
    for m, name in zip(models, names, strict=True):
        shutil.copytree(m, partial / ensemble.MEMBERS_SUBDIR / name,
                        ignore=shutil.ignore_patterns("checkpoints", "cache"))
    config = {
        "model_type": ensemble.MODEL_TYPE,
        "members": [f"{ensemble.MEMBERS_SUBDIR}/{name}" for name in names],
        "id2label": dict(enumerate(checked.labels)),
        "sample_rate_hz": checked.sample_rate_hz,
    }
    (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    partial.rename(out)
    log.info("wrote ensemble %s of %d models (%d labels)", out, len(models), len(checked.labels))
    return {"out": str(out), "members": config["members"], "labels": list(checked.labels)}


def run_ensemble(args: argparse.Namespace) -> int:
    print(json.dumps(build_ensemble(list(args.model), args.out)), flush=True)
    return 0
