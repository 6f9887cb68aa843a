"""``intentd-train tune-encoder``: fine-tune Whisper's top encoder layers with the head, in noise.

The compact model's Whisper front-end is frozen in ``fit``: the head learns from whatever the
stock encoder makes of noisy speech, and under loud crowd noise the stock encoder loses the
words (its own transcripts of 6 dB babble are unrelated sentences). Here the top ``layers``
of the encoder are trained together with the head on each training utterance and on
``variants`` noisy copies of it (babble and café from the training talker pool at 0-15 dB,
steady noise at 3-20 dB; SNR as the Rhino benchmark measures it, by maximum frame energy),
so the encoder learns to keep the foreground voice's words. Each noisy copy carries up to
``context_s`` of noise before and after the words, as segments cut from a noisy stream do,
and ``pause_prob`` of them a mid-command pause (0.3-1.2 s) that the noise fills: in noise
the segmenter cannot see the silence to shorten it, so the classifier hears it whole.

The frozen part (the stem, and the layers below the tuned ones) runs once per copy and is
cached (float16: 2.7 GB for the demo's 4,800 utterances with 3 variants; the process
~6 GB), so an epoch costs only the tuned layers. The tuned encoder is written as a complete
CTranslate2 Whisper dir (``whisper/`` in the output model dir, named by the config's
``frontend_weights``); the daemon and ``intentd-eval`` load it in place of the stock
weights, with no change in speed. Held-out accuracy is re-measured through that CTranslate2
path and the score temperature re-fitted on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.errors import ConfigError, DataError
from intentd.trainer.fitting.persist import readable_by_all
from intentd.trainer.synthesis import pauses
from intentd.trainer.tuning import heldout

log = logging.getLogger(__name__)

WEIGHTS_SUBDIR = "whisper"
# Crowd noise is what the stock encoder fails on; it gets two of the six draws.
_KINDS = ("babble", "babble", "cafe", "pink", "brown", "hum")
_CROWD = ("babble", "cafe")


@dataclass(frozen=True)
class TuneOptions:
    layers: int = 4
    epochs: int = 2
    variants: int = 3
    encoder_lr: float = 2e-5
    head_lr: float = 1e-4
    batch_size: int = 16
    crowd_snr_db: tuple[float, float] = (0.0, 15.0)
    steady_snr_db: tuple[float, float] = (3.0, 20.0)
    # In crowd noise the segmenter cannot find where the words stop: a segment carries up to
    # the gap's worth of noise on either side (measured: 6 dB babble per clip scores 81%, the
    # same clips with 0.3-0.8 s of babble either side 69%). Noisy copies get this much (at
    # most, per side) of silence added before the noise is mixed in.
    context_s: float = 0.6
    # Real speakers pause mid-command (16% for 800 ms or more); in crowd noise the pause
    # reaches the classifier as noise. Measured per clip at 6 dB babble: 82% without a
    # pause, 73% with one, for a model tuned without them.
    pause_prob: float = 0.3
    # The convolutional stem too (needs every layer tuned: it feeds the first one); the
    # cache then holds log-mel frames instead of layer states.
    tune_stem: bool = False
    # Weight of a second loss, besides the intent's: each copy's 80 ms embeddings against
    # what the encoder made of the same copy without its noise before tuning began (the
    # pause and context then silence), relative to the mean square of those targets. The
    # class label says only which intent a copy holds; this says, frame by frame, what the
    # words looked like in quiet. 0: the intent's loss alone.
    distill: float = 0.0
    seed: int = 0
    threads: int = 2
    # Crowd noise is drawn per kind as ``crowd_beds`` independent beds of ``crowd_bed_s``,
    # each copy cropping a random one (drawing a crowd per copy costs more than the copy).
    # Not one long bed: a bed is 3-6 of the pool's 20 s talker tracks, looped, so one long
    # bed would give every copy the same few voices saying the same words.
    crowd_beds: int = 64
    crowd_bed_s: float = 30.0
    # Voices of the training crowd pool the beds are mixed from (synth's noise uses 16);
    # 64 measured no better on unseen babble talkers (docs/results.md).
    crowd_talkers: int = 16

    def validate(self, n_layers: int | None = None) -> None:
        """Every option; the layer count only against ``n_layers`` (known once the encoder
        is loaded)."""
        if self.layers < 1 or (n_layers is not None and self.layers > n_layers):
            raise ConfigError(f"--layers must be in [1, {n_layers or 'the encoder depth'}] "
                              f"(the encoder has {n_layers or '?'}), got {self.layers}")
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got "
                                  f"{getattr(self, name)}")
        if self.tune_stem and n_layers is not None and self.layers != n_layers:
            raise ConfigError(f"--tune-stem needs every layer tuned (--layers {n_layers}): "
                              f"the stem feeds the first layer; got --layers {self.layers}")
        if not 0 <= self.pause_prob <= 1:
            raise ConfigError(f"--pause-prob must be in [0, 1], got {self.pause_prob}")
        if not 0 <= self.distill <= 100:
            raise ConfigError(f"--distill must be in [0, 100], got {self.distill}")
        if not 0 <= self.context_s <= 5:
            raise ConfigError(f"--context-s must be in [0, 5] seconds, got {self.context_s}")
        if self.crowd_bed_s <= 0:
            raise ConfigError(f"crowd_bed_s must be > 0, got {self.crowd_bed_s}")
        if self.crowd_beds < 1:
            raise ConfigError(f"crowd_beds must be >= 1, got {self.crowd_beds}")
        from intentd.trainer.synthesis import crowd

        try:
            crowd.check_pool_talkers(self.crowd_talkers)
        except ValueError as exc:
            raise ConfigError(f"--crowd-talkers: {exc}") from None
        if self.variants < 0:
            raise ConfigError(f"--variants must be >= 0, got {self.variants}")
        for name in ("encoder_lr", "head_lr"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1), got "
                                  f"{getattr(self, name)}")


def _noisy_copy(audio: np.ndarray, rng: np.random.Generator,
                beds: dict[str, list[np.ndarray]],
                opts: TuneOptions) -> tuple[np.ndarray, np.ndarray]:
    """A noisy copy of ``audio`` and the same copy without the noise (its pause and context
    silent, sample for sample aligned): the input and the teacher's input."""
    from intentd.trainer.evaluation.snr import mix_max_energy
    from intentd.trainer.evaluation.streams import with_pause
    from intentd.trainer.synthesis import augment as aug

    kind = _KINDS[int(rng.integers(len(_KINDS)))]
    if audio.size >= 8000 and rng.random() < opts.pause_prob:
        audio = with_pause(audio, int(rng.uniform(*pauses.PAUSE_S) * 16000))
    lead, trail = (int(rng.uniform(0, opts.context_s) * 16000) for _ in range(2))
    audio = np.pad(audio, (lead, trail))
    if kind in _CROWD:
        bed = beds[kind][int(rng.integers(len(beds[kind])))]
        noise = aug.fit_length(bed, audio.size, rng)
        snr = float(rng.uniform(*opts.crowd_snr_db))
    else:
        noise = aug.make_noise(kind, audio.size, rng)
        snr = float(rng.uniform(*opts.steady_snr_db))
    return aug.limit_peak(mix_max_energy(audio, noise, snr), 0.98), audio


def crowd_beds(opts: TuneOptions, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """``opts.crowd_beds`` independently drawn beds of ``opts.crowd_bed_s`` per crowd kind,
    from the training talker pool (evaluations use the other)."""
    from intentd.trainer.synthesis import augment as aug

    n = int(opts.crowd_bed_s * 16000)
    return {k: [aug.make_noise(k, n, rng, crowd_pool="train", crowd_talkers=opts.crowd_talkers)
                for _ in range(opts.crowd_beds)] for k in _CROWD}


def _check_out(src: Path, dst: Path) -> None:
    if dst.resolve() == src.resolve():
        raise ConfigError("--out must differ from --model (the untuned model is kept)")
    if dst.exists():
        raise DataError(f"{dst}: already exists; choose another --out or remove it")


def _copy_model(src: Path, dst: Path) -> Path:
    """A copy of ``src`` beside ``dst``, renamed to ``dst`` once complete: an interrupted run
    never leaves a model dir whose head and encoder do not belong together."""
    _check_out(src, dst)  # again: the tuning took minutes
    partial = dst.parent / f".{dst.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(src, partial, ignore=shutil.ignore_patterns("checkpoints", "cache"))
    return partial


def tune(model_dir: Path, data: str, out: Path, opts: TuneOptions) -> dict[str, Any]:
    """Tune ``model_dir``'s encoder and head on ``data``'s train split; write ``out``."""
    from intentd.trainer.fitting.data import load_audio

    opts.validate()
    _check_out(model_dir, out)
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{model_dir}: not a model dir ({err})") from err
    if cfg.get("frontend") != "whisper_tiny_en":
        raise ConfigError(f"{model_dir}: tune-encoder needs a compact model on the "
                          f"whisper_tiny_en front-end, this one uses "
                          f"{cfg.get('frontend', 'speech_embedding')!r}")
    dataset, model_labels = heldout.load_with_labels(
        data, heldout.fit_split(model_dir), cfg.get("id2label") or {}, cfg_path,
        "tune on the data it was fit on")

    import torch
    from transformers import AutoModelForAudioClassification

    from intentd.daemon.model import checksums, compact, frontend_whisper, frontends
    from intentd.trainer.fitting import slots
    from intentd.trainer.tuning.whisper_torch import (
        SplitEncoder,
        distill_loss,
        load_encoder,
        save_encoder,
    )

    compact.register()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    src_weights = (model_dir / cfg["frontend_weights"] if cfg.get("frontend_weights")
                   else frontend_whisper.model_dir())
    enc = load_encoder(src_weights)
    opts.validate(len(enc.layers))
    head = AutoModelForAudioClassification.from_pretrained(model_dir, local_files_only=True)
    label_id = {lab: i for i, lab in enumerate(model_labels)}
    # A slot model's heads learn on with the encoder (else the tuned states would drift away
    # from what they were trained on).
    space = getattr(head, "slot_space", None)
    slot_rows = slots.targets(dataset.train, space) if space is not None else None
    split = SplitEncoder(enc, len(enc.layers) - opts.layers, stem=opts.tune_stem)

    t0 = time.monotonic()
    rng = np.random.default_rng([opts.seed, 0x7E5E])
    beds = crowd_beds(opts, rng) if opts.variants else {}
    teach = opts.distill > 0
    # (frozen part's output, label, the noise-free copy's embeddings when distilling, the
    # utterance's index); all before the first step, so the targets come from the encoder
    # as it was given.
    cached: list[tuple[Any, int, Any, int]] = []
    for n, ex in enumerate(dataset.train):
        audio = load_audio(ex, 16000)
        y = label_id[ex.label]
        pairs = [(audio, audio)] + [_noisy_copy(audio, rng, beds, opts)
                                    for _ in range(opts.variants)]
        goals = split.targets([q for _, q in pairs]) if teach else [None] * len(pairs)
        cached += [(split.lower(a), y, g, n) for (a, _), g in zip(pairs, goals, strict=True)]
        if n % 1000 == 999:
            log.info("tune-encoder: lower layers of %d / %d utterances", n + 1,
                     len(dataset.train))
    prepare_s = time.monotonic() - t0

    tuned = [p for layer in enc.layers[split.first:] for p in layer.parameters()]
    tuned += list(enc.ln.parameters())
    if opts.tune_stem:
        tuned += [*enc.conv1.parameters(), *enc.conv2.parameters()]
    for p in enc.parameters():
        p.requires_grad_(False)
    for p in tuned:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": tuned, "lr": opts.encoder_lr},
                             {"params": head.parameters(), "lr": opts.head_lr}],
                            weight_decay=0.01)
    # Length-sorted batches: little padding; their order is shuffled each epoch.
    order = np.argsort([c[0].shape[0] for c in cached], kind="stable")
    # Relative to the targets' mean square (of the clean utterances), so --distill weighs
    # the same whatever the encoder's output scale.
    scale = (float(np.mean([float(c[2].float().pow(2).mean())
                            for c in cached[:: 1 + opts.variants]])) if teach else 1.0)
    batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    t1 = time.monotonic()
    losses, distill_losses = [], []
    for epoch in range(opts.epochs):
        head.train()
        total = total_distill = 0.0
        for k in np.random.default_rng([opts.seed, epoch]).permutation(len(batches)):
            batch = [cached[i] for i in batches[k]]
            x, mask = split.upper([c[0] for c in batch])
            extra = ({} if slot_rows is None else
                     {"slot_labels": torch.from_numpy(slot_rows[[c[3] for c in batch]])})
            loss = head(input_values=x, attention_mask=mask,
                        labels=torch.tensor([c[1] for c in batch]), **extra).loss
            total += float(loss.detach())
            if teach:
                far = distill_loss(x, mask, [c[2] for c in batch]) / scale
                total_distill += float(far.detach())
                loss = loss + opts.distill * far
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(round(total / len(batches), 4))
        distill_losses.append(round(total_distill / len(batches), 4))
        log.info("tune-encoder: epoch %d/%d, loss %.4f%s", epoch + 1, opts.epochs, losses[-1],
                 f", distillation {distill_losses[-1]:.4f}" if teach else "")
    train_s = time.monotonic() - t1
    del cached

    final, out = out, _copy_model(model_dir, out)
    save_encoder(enc, src_weights, out / WEIGHTS_SUBDIR)
    head.config.frontend_weights = WEIGHTS_SUBDIR
    head.config.frontend_sha256 = checksums.record(frontends.WHISPER_TINY_EN,
                                                   out / WEIGHTS_SUBDIR)
    head.eval()
    summary = {"options": asdict(opts), "train_utterances": len(dataset.train),
               "copies_per_utterance": 1 + opts.variants, "epoch_loss": losses,
               **({"epoch_distill_loss": distill_losses} if teach else {}),
               "prepare_s": round(prepare_s, 1), "train_s": round(train_s, 1)}
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
    extractor.frontend_weights = WEIGHTS_SUBDIR
    extractor.weights_dir = out / WEIGHTS_SUBDIR
    summary.update(heldout.measure(head, extractor, dataset, model_labels))
    head.save_pretrained(str(out))
    extractor.save_pretrained(str(out))
    readable_by_all(out)
    _update_report(out, summary)
    out.rename(final)
    return summary


def _update_report(out: Path, summary: dict[str, Any]) -> None:
    from intentd.trainer.fitting.report import write_json

    path = out / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    report["tuned_encoder"] = summary
    write_json(path, report)  # not write_report: the confusion plot is fit's, left as it is


# TuneOptions fields set from the command line: (field, type, help).
_CLI_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("layers", int, "top encoder layers to tune (of 4)"),
    ("epochs", int, "passes over the copies"),
    ("variants", int, "noisy copies per utterance"),
    ("encoder_lr", float, "learning rate of the encoder layers"),
    ("head_lr", float, "learning rate of the head"),
    ("batch_size", int, "utterances per step"),
    ("context_s", float, "most seconds of noise a noisy copy gets before and after its words"),
    ("pause_prob", float, "share of noisy copies given a mid-command pause (0.3-1.2 s)"),
    ("tune_stem", bool, "train the conv stem too (needs every layer tuned, the default)"),
    ("distill", float, "weight of a loss pulling each noisy copy's embeddings towards the "
                       "untuned encoder's of its noise-free version (0: off)"),
    ("crowd_talkers", int, "voices of the training crowd pool babble and café are mixed from"),
    ("seed", int, "seed"),
    ("threads", int, "torch CPU threads"),
)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    d = TuneOptions()
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="a compact model on the Whisper front-end (intentd-train fit)")
    parser.add_argument("--data", required=True, metavar="SRC",
                        help="the data it was fit on (its train split is used)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="new model dir: the model, its tuned encoder in whisper/")
    for name, kind, text in _CLI_OPTIONS:
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, type=kind, default=getattr(d, name),
                                help=f"{text} (default %(default)s)")


def run_tune(args: argparse.Namespace) -> int:
    opts = TuneOptions(**{name: getattr(args, name) for name, _, _ in _CLI_OPTIONS})
    if not (args.model / "config.json").is_file():
        raise DataError(f"{args.model}: no config.json; pass a model dir from intentd-train fit")
    summary = tune(args.model, args.data, args.out, opts)
    print(json.dumps({"out": str(args.out), **{k: v for k, v in summary.items()
                                               if k.endswith("_accuracy")}}), flush=True)
    return 0
