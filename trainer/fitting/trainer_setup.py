"""The HF ``Trainer`` that ``intentd-train fit`` drives: its arguments, metrics and callbacks.

Split from :mod:`intentd.trainer.fitting.fit` (which prepares the data and writes the model);
the batch arithmetic here also spreads ``--batch-size`` over the processes of a distributed
launch (:mod:`intentd.trainer.fitting.distributed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.model.slots import SlotSpace
from intentd.trainer.fitting.fit_args import TrainArguments


def make_trainer(model: Any, extractor: Any, prep: Any, out: Path, train_args: TrainArguments,
                 hp: dict[str, Any], num_labels: int, view: str,
                 space: SlotSpace | None = None, test: Sequence[Any] = (),
                 world: int = 1, cpu: bool = False) -> Any:
    """The Trainer for ``prep``; ``world`` processes (a distributed launch) share each
    optimizer step, so the effective batch, and with it the steps and the learning-rate
    schedule, stay those of one process. ``cpu``: the launch runs on CPU (gloo) whatever
    ``--use-cpu`` says."""
    import torch
    from transformers import Trainer, TrainingArguments

    per_rank = max(1, hp["batch_size"] // world)
    # A compact head's whole batch fits in memory at once; splitting it into accumulated
    # micro-batches only adds per-step overhead (window models keep 32 per step).
    cap = per_rank if view == "utterance" else 32
    per_device = train_args.per_device_batch_size or min(per_rank, cap)
    accum = max(1, round(hp["batch_size"] / (per_device * world)))
    steps_per_epoch = max(1, -(-len(prep.train_ds) // (per_device * accum * world)))
    total = max(1, int(steps_per_epoch * hp["epochs"]))
    # ~10 evaluation points (and checkpoints) per run, whatever the epoch count: enough to
    # pick the best model without spending the run on evaluation and disk writes. Those in
    # the first half are skipped (second_half_only): with the learning rate still high there,
    # the best model never came from it, and each evaluation cost ~2% of a demo's training.
    eval_steps = max(1, -(-total // min(10, max(1, int(hp["epochs"])))))
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=hp["epochs"],
        learning_rate=hp["learning_rate"],
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=accum,
        warmup_steps=float(hp["warmup_ratio"]) if hp["warmup_ratio"] < 1 else 0,
        weight_decay=hp["weight_decay"],
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        logging_steps=eval_steps,
        load_best_model_at_end=True,
        # A slot model is chosen on whole commands, not on intents alone.
        metric_for_best_model="command_acceptance" if space else "utterance_accuracy",
        label_names=["labels", "slot_labels"] if space else ["labels"],
        greater_is_better=True,
        save_total_limit=train_args.save_total_limit,
        seed=train_args.seed,
        use_cpu=train_args.use_cpu or cpu,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=not train_args.use_cpu and torch.cuda.is_available(),
    )
    utt, labels = prep.eval_utt, prep.test_labels

    def compute_metrics(p: Any) -> dict[str, Any]:
        scores = utterance_scores(p.predictions, utt, labels, num_labels)
        predicted = scores.pop("utterance_predictions")
        if space is not None:
            from intentd.trainer.fitting.slots import score

            names = [model.config.id2label[i] for i in range(num_labels)]
            scores["command_acceptance"] = score(p.predictions[1], predicted, test, names,
                                                 space)["command_acceptance"]
        return scores

    from intentd.trainer.fitting.batching import bucketed

    cls = bucketed(Trainer) if view == "utterance" else Trainer
    return cls(
        model=model, args=args, train_dataset=prep.train_ds, eval_dataset=prep.eval_ds,
        data_collator=prep.collator(extractor), compute_metrics=compute_metrics,
        processing_class=extractor, callbacks=[second_half_only(total // 2)],
    )


def second_half_only(first_step: int) -> Any:
    """A callback that drops evaluations and checkpoints before ``first_step`` (the last
    step always keeps them, so even a run shorter than one interval has a best model)."""
    from transformers import TrainerCallback

    class SecondHalfOnly(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step < first_step and state.global_step < state.max_steps:
                control.should_evaluate = False
                control.should_save = False
            return control

    return SecondHalfOnly()


def logits_of(predictions: Any) -> np.ndarray:
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def utterance_scores(logits: Any, utt_index: np.ndarray, utt_labels: np.ndarray,
                     num_labels: int) -> dict[str, Any]:
    from intentd.trainer.fitting.report import score_windows

    return score_windows(logits_of(logits), utt_index, utt_labels, num_labels)
