"""``intentd-train synth`` command line: flags to ``SynthOptions``, then ``synthesize``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from intentd.trainer.synthesis import negatives, pauses
from intentd.trainer.synthesis.synth import SynthOptions, synthesize


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthOptions()
    parser.add_argument("spec", metavar="SPEC.yaml", help="intent spec (intents + slots)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output data set dir")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    parser.add_argument("--per-intent", type=int, default=d.per_intent, metavar="N",
                        help=f"utterances per intent, train+test (default {d.per_intent})")
    parser.add_argument("--test-fraction", type=float, default=d.test_fraction,
                        help="share of eSpeak voice variants held out for test "
                             f"(default {d.test_fraction})")
    parser.add_argument("--piper-share", type=float, default=d.piper_share,
                        help="share of utterances from the Piper voice, all in train "
                             f"(default {d.piper_share}; 0 disables Piper)")
    parser.add_argument("--flite-share", type=float, default=d.flite_share,
                        help="share of utterances from CMU flite voices, all in train "
                             f"(default {d.flite_share}; 0 disables flite)")
    parser.add_argument("--snr-db", type=float, nargs=2, default=list(d.snr_db),
                        metavar=("MIN", "MAX"), help="background noise SNR range in dB")
    parser.add_argument("--noise-prob", type=float, default=d.noise_prob)
    parser.add_argument("--noise-kinds", type=_name_list, default=d.noise_kinds,
                        metavar="K,K",
                        help="generated noises to train with, comma-separated, drawn "
                             "uniformly; list a kind twice to draw it twice as often "
                             f"(default {','.join(d.noise_kinds)}; also: cafe)")
    parser.add_argument("--telephone-prob", type=float, default=d.telephone_prob,
                        help="share rendered as an 8 kHz μ-law phone line")
    parser.add_argument("--reverb-prob", type=float, default=d.reverb_prob)
    parser.add_argument("--speed-prob", type=float, default=d.speed_prob)
    parser.add_argument("--reject-share", type=float, default=d.reject_share, metavar="R",
                        help=f"rejection class {negatives.REJECT_LABEL!r} (out-of-domain "
                             "speech, babble, noise) with R x --per-intent utterances "
                             f"(default {d.reject_share}; 0: no rejection class)")
    parser.add_argument("--cut-share", type=float, default=d.cut_share, metavar="S",
                        help="share of the rejection class's spoken sentences that are cut "
                             "commands: the start or end of a command's audio, cut between "
                             "two words, that is no command on its own, to teach the model "
                             "what the daemon's segmentation must not answer early (default "
                             f"{d.cut_share}; see docs/results.md)")
    parser.add_argument("--noise-file", action="append", default=[], metavar="WAV",
                        help="background noise recording (repeatable)")
    parser.add_argument("--train-accents", type=_name_list, default=(), metavar="A,B",
                        help="eSpeak accents for training voices, comma-separated "
                             "(default: all)")
    parser.add_argument("--test-accents", type=_name_list, default=(), metavar="A,B",
                        help="eSpeak accents for held-out test voices (default: all); with "
                             "--train-accents, measures accuracy on an unseen kind of voice")
    parser.add_argument("--gen-timbres", type=int, default=d.gen_timbres, metavar="N",
                        help="add N training speakers with generated eSpeak timbres "
                             f"(random formants, pitch, tone; default {d.gen_timbres})")
    parser.add_argument("--pause-share", type=float, default=d.pause_share, metavar="P",
                        help="share of eSpeak/flite training utterances spoken in two parts "
                             f"with a {pauses.TRAIN_PAUSE_S[0]}-{pauses.TRAIN_PAUSE_S[1]} s gap "
                             f"(default {d.pause_share})")
    parser.add_argument("--jobs", type=int, default=d.jobs,
                        help=f"worker processes (default {d.jobs})")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (none either when stderr is not a terminal)")


def _name_list(value: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in value.split(",") if a.strip())


def options_from_args(args: argparse.Namespace) -> SynthOptions:
    return SynthOptions(
        per_intent=args.per_intent, test_fraction=args.test_fraction,
        piper_share=args.piper_share, flite_share=args.flite_share,
        snr_db=(args.snr_db[0], args.snr_db[1]),
        noise_prob=args.noise_prob, noise_kinds=args.noise_kinds,
        telephone_prob=args.telephone_prob,
        reverb_prob=args.reverb_prob, speed_prob=args.speed_prob,
        noise_files=tuple(args.noise_file), reject_share=args.reject_share,
        cut_share=args.cut_share,
        train_accents=args.train_accents,
        test_accents=args.test_accents, gen_timbres=args.gen_timbres,
        pause_share=args.pause_share, jobs=args.jobs,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty())


def run_synth(args: argparse.Namespace) -> int:
    """CLI entry; IntentdError propagates to the caller's one-line handler."""
    summary = synthesize(args.spec, args.out, options_from_args(args), force=args.force)
    print(json.dumps(asdict(summary)), flush=True)
    return 0
