"""``intentd-train``: synthesize speech data, render a demo call, fine-tune a model.

Subcommand modules are imported only when their subcommand runs, so ``--help`` stays fast
(torch and transformers take seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from intentd.daemon import __version__
from intentd.daemon.errors import IntentdError
from intentd.trainer import extras

PROG = "intentd-train"
EXIT_CODES = """exit codes: 0 ok; 2 bad usage, settings or data (one line on stderr says what
and how to fix it); 1 an internal failure."""
# subcommand -> examples shown at the end of its --help (the first one also in the main help)
_EXAMPLES: dict[str, tuple[str, ...]] = {
    "synth": ("intentd-train synth lights.yaml --out data/lights --seed 1",
              "intentd-train synth banking.yaml --out data/bank --per-intent 400 --piper-share 0"),
    "democall": ("intentd-train democall lights.yaml --out call.wav --truth call.csv --seed 7",
                 "intentd-train democall lights.yaml --out c8k.wav --truth c8k.csv --rate-hz 8000"),
    "fit": ("intentd-train fit --data data/lights --model compact --out models/lights",
            "intentd-train fit --data data/lights --model compact --frontend speech_embedding "
            "--out models/lights-se"),
    "tune-encoder": ("intentd-train tune-encoder --model models/lights --data data/lights "
                     "--out models/lights-t",),
    "ensemble": ("intentd-train ensemble --model models/a --model models/b --out models/ab",),
    "soup": ("intentd-train soup --model models/t1 --model models/t2 --data data/lights "
             "--out models/soup",),
    "export": ("intentd-train export --model models/w2v2 --windows-from data/lights",),
}

# subcommand -> (module, add-arguments function, run function, one-line help)
_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "synth": (
        "intentd.trainer.synthesis.synth_cli", "add_synth_arguments", "run_synth",
        "synthesize a labelled speech data set (audiofolder) from an intent spec YAML",
    ),
    "democall": (
        "intentd.trainer.synthesis.democall", "add_democall_arguments", "run_democall",
        "render a long demo call WAV of held-out-voice utterances plus a truth CSV",
    ),
    "fit": (
        "intentd.trainer.fitting.fit", "add_fit_arguments", "run_fit",
        "fine-tune an audio classifier (compact or any HF audio model) on labelled audio",
    ),
    "tune-encoder": (
        "intentd.trainer.tuning.tune_encoder", "add_tune_arguments", "run_tune",
        "tune a Whisper-front-end compact model's top encoder layers with its head, in noise",
    ),
    "ensemble": (
        "intentd.trainer.tuning.ensemble_cli", "add_ensemble_arguments", "run_ensemble",
        "combine models over the same labels into one model dir that averages their verdicts",
    ),
    "soup": (
        "intentd.trainer.tuning.soup", "add_soup_arguments", "run_soup",
        "average the weights of compact models tuned from one model into one model",
    ),
    "export": (
        "intentd.trainer.tuning.export", "add_export_arguments", "run_export",
        "export a window model (wav2vec2-class) to ONNX fp32 and int8 for the daemon's "
        "onnx backends, timed and checked against torch",
    ),
}


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Synthesize speech data, render a demo call, fine-tune an intent model.",
        epilog="examples:\n" + "\n".join(f"  {e[0]}" for e in _EXAMPLES.values())
               + f"\n\n{EXIT_CODES}\n`intentd-train COMMAND --help` says more.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr logging level (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, add_fn, _run, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in _EXAMPLES[name])
                                  + f"\n\n{EXIT_CODES}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            # Only the chosen subcommand's module is imported (for its arguments).
            getattr(importlib.import_module(module), add_fn)(p)
    return parser


# Set before the command's module imports numpy. tune-encoder interleaves numpy's small
# log-mel products with torch ops: OpenBLAS's threads and torch's spin against each other
# on 2 cores (0.100 s per utterance's copies against 0.027 s with one BLAS thread).
_COMMAND_ENV: dict[str, dict[str, str]] = {"tune-encoder": {"OPENBLAS_NUM_THREADS": "1"}}


def _chosen_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in _COMMANDS), None)


def _rank_tag() -> str:
    """"rank R of N: " under torchrun with several processes (whose lines interleave), else ""."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f"rank {rank} of {world}: " if world.isdigit() and int(world) > 1 else ""


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        command = _chosen_command(args_list)
        for key, value in _COMMAND_ENV.get(command or "", {}).items():
            os.environ.setdefault(key, value)
        if not sys.stderr.isatty():
            os.environ.setdefault("TQDM_DISABLE", "1")  # a log file gets lines, not bars
        if command is not None:
            extras.require(PROG)  # before the command's module imports what is missing
        parser = _build_parser(command)
        args = parser.parse_args(args_list)
        logging.basicConfig(
            level=getattr(logging, args.log_level),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        module, _add, run_fn, _help = _COMMANDS[args.command]
        return int(getattr(importlib.import_module(module), run_fn)(args) or 0)
    except IntentdError as err:
        msg = " ".join(str(err).split())  # exactly one line, whatever the message holds
        print(f"{PROG}: error: {_rank_tag()}{msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
