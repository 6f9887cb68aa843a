"""``intentd-train soup``: one model whose weights are the mean of several models' weights.

Models tuned onward from one starting point (``tune-encoder`` run again on its own output,
or twice from one model with other seeds) end in the same basin of the loss; the mean of
their weights lies inside it, and scores better in noise than either (Wortsman et al.,
"Model soups", 2022; measured on banking: docs/results.md). Unlike an ensemble the
soup costs what one model costs to run. Models trained apart (two ``fit`` runs) share no
basin and their mean is noise: the soup is measured on the held-out split next to its
members and refused when it is worse than the best of them.

Compact models only: their head and, with the Whisper front-end, the encoder (the stock
weights for a member without tuned ones) are averaged; the score temperature is re-fitted.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from intentd.daemon.errors import ConfigError, DataError
from intentd.trainer.fitting.persist import readable_by_all
from intentd.trainer.tuning.tune_encoder import WEIGHTS_SUBDIR

log = logging.getLogger(__name__)

# Held-out accuracy a soup may lose against its best member before it is refused: beyond
# the noise of one re-measurement, short of what averaging unrelated weights costs.
TOLERANCE = 0.02
# Config keys that may differ between the members of a soup (all else is architecture).
_FREE_KEYS = frozenset({"score_temperature", "frontend_weights", "frontend_sha256", "_name_or_path",
                        "transformers_version", "dtype", "torch_dtype"})
# fit's and tune's records of their own runs: they do not describe the soup.
_NOT_COPIED = ("checkpoints", "cache", "trainer_state.json", "training_args.bin",
               "confusion_matrix.png", "report.json")


def add_soup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, action="append", type=Path, metavar="DIR",
                        help="a member model dir (repeat: at least 2, tuned from one model)")
    parser.add_argument("--data", required=True, metavar="SRC",
                        help="the data the members were fit on (held-out split: measuring "
                             "and calibration)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="new model dir")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (default %(default)s)")


def _mean_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Float tensors averaged; integer ones (counters) taken from the first member."""
    return {k: (sum(s[k] for s in states) / len(states) if v.is_floating_point() else v)
            for k, v in states[0].items()}


def _check_members(models: list[Path], out: Path) -> list[dict[str, Any]]:
    """The members' configs, once they are shown to be compact models of one architecture
    and one label map."""
    from intentd.daemon.model import compact
    from intentd.daemon.model.loader import read_config
    from intentd.trainer.tuning.ensemble_cli import check_member_dirs

    check_member_dirs(models, out, "a soup", "a soup of one model is that model")
    configs = [read_config(m) for m in models]
    for m, cfg in zip(models, configs, strict=True):
        if cfg["model_type"] != compact.MODEL_TYPE:
            raise ConfigError(f"{m}: a {cfg['model_type']!r} model; soup averages compact "
                              f"models (intentd-train fit --model compact); combine other "
                              f"models with intentd-train ensemble")
    first = {k: v for k, v in configs[0].items() if k not in _FREE_KEYS}
    for m, cfg in zip(models[1:], configs[1:], strict=True):
        other = {k: v for k, v in cfg.items() if k not in _FREE_KEYS}
        differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if differ:
            raise ConfigError(f"{m} and {models[0]} differ in {', '.join(differ)}; a soup's "
                              f"members share architecture and labels (tuned from one model)")
    return configs


def build_soup(models: list[Path], data: str, out: Path, threads: int = 2) -> dict[str, Any]:
    """Average ``models`` into ``out``, measured against them on ``data``'s held-out split."""
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    configs = _check_members(models, out)
    from intentd.trainer.tuning import heldout

    splits = {heldout.fit_split(m) for m in models}
    if len(splits) > 1:
        raise ConfigError(f"the members were fit with different splits {sorted(splits)} "
                          f"(seed, test fraction): one's held-out utterances are another's "
                          f"training data, so the soup cannot be measured fairly")
    seed, fraction = split = splits.pop()
    dataset, labels = heldout.load_with_labels(
        data, split, configs[0].get("id2label") or {}, models[0] / "config.json",
        "pass the data the members were fit on")

    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from intentd.daemon.model import checksums, compact, frontend_whisper, frontends

    compact.register()
    torch.set_num_threads(threads)
    heads, extractors, members = [], [], []
    for m in models:
        head = AutoModelForAudioClassification.from_pretrained(m, local_files_only=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained(m, local_files_only=True)
        scores = heldout.measure(head, extractor, dataset, labels, who=f"soup member {m}",
                                 calibrate=False)
        heads.append(head)
        extractors.append(extractor)
        members.append({"model": str(m), **scores})

    soup = heads[0]
    soup.load_state_dict(_mean_state([h.state_dict() for h in heads]))
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(models[0], partial, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    extractor = extractors[0]  # the soup's: member 0's, pointed at the averaged encoder
    tuned = [cfg.get("frontend_weights") for cfg in configs]
    if configs[0].get("frontend") == frontends.WHISPER_TINY_EN and any(tuned):
        from intentd.trainer.tuning.whisper_torch import load_encoder, save_encoder

        sources = [m / sub if sub else frontend_whisper.model_dir()
                   for m, sub in zip(models, tuned, strict=True)]
        encoders = [load_encoder(s) for s in sources]
        encoders[0].load_state_dict(_mean_state([e.state_dict() for e in encoders]))
        # Member 0's copied weights (whatever their dir's name) give way to the average.
        for sub in {tuned[0], WEIGHTS_SUBDIR} - {None}:
            shutil.rmtree(partial / sub, ignore_errors=True)
        save_encoder(encoders[0], sources[0], partial / WEIGHTS_SUBDIR)
        soup.config.frontend_weights = WEIGHTS_SUBDIR
        soup.config.frontend_sha256 = checksums.record(frontends.WHISPER_TINY_EN,
                                                       partial / WEIGHTS_SUBDIR)
        extractor.frontend_weights = WEIGHTS_SUBDIR
        extractor.weights_dir = partial / WEIGHTS_SUBDIR
    scores = heldout.measure(soup, extractor, dataset, labels, who="soup")
    best = max(members, key=lambda s: s.get("held_out_accuracy", 0.0))
    soup_acc, best_acc = (s.get("held_out_accuracy", 0.0) for s in (scores, best))
    if soup_acc < best_acc - TOLERANCE:
        shutil.rmtree(partial)
        raise DataError(
            f"the soup scores {soup_acc:.1%} held out, its best member {best['model']} "
            f"{best_acc:.1%}: the members were not tuned from one model, so their weights do "
            f"not average; use the best member, or intentd-train ensemble to average their "
            f"verdicts")
    soup.save_pretrained(str(partial))
    extractor.save_pretrained(str(partial))
    readable_by_all(partial)
    from intentd.trainer.fitting.report import write_json

    # The split: later tuning of the soup divides the data as its members' fit did.
    write_json(partial / "report.json", {"soup": {"members": members, **scores},
                                         "split": {"seed": seed, "test_fraction": fraction}})
    partial.rename(out)
    log.info("wrote soup %s of %d models: held out %.4f (best member %.4f)", out, len(models),
             soup_acc, best_acc)
    return {"out": str(out), "members": members,
            **{k: v for k, v in scores.items() if k.endswith("_accuracy")}}


def run_soup(args: argparse.Namespace) -> int:
    print(json.dumps(build_soup(list(args.model), args.data, args.out, args.threads)),
          flush=True)
    return 0
