"""``intentd-eval``: evaluate a model on long streams through the daemon's pipeline.

Example::

    intentd-eval --model models/banking --data data/banking --out eval/banking
    intentd-eval --model models/banking --data call.wav --truth call.csv --out eval/call \\
        --telephone --snrs clean,12,6
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from intentd.daemon import __version__
from intentd.daemon.config import load_config
from intentd.daemon.errors import ConfigError, DataError, IntentdError
from intentd.trainer import extras
from intentd.trainer.evaluation.conditions import parse_conditions
from intentd.trainer.synthesis.signals import NOISE_KINDS

EPILOG = """examples:
  intentd-eval --model models/banking --data data/banking --out reports/banking
  intentd-eval --model M --data call.wav --truth call.csv --out R        a long recording
  intentd-eval --model M --data D --out R --telephone                    via 8 kHz mu-law
  intentd-eval --model M --data D --out R --noise-kind cafe --snrs clean,12,6
  intentd-eval --model M --data D --out R --per-stream 1 --gap-s 0.3 0.5 Rhino's protocol
  intentd-eval --model M --data D --out R --layout back-to-back --snrs clean

exit codes: 0 ok; 2 bad usage, settings or data (one line on stderr says what and how to
fix it); 1 an internal failure."""

log = logging.getLogger("intentd-eval")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="intentd-eval",
        description="Evaluate an intent model on long streams replayed through the daemon "
                    "pipeline: accuracy, macro-F1, segmentation, false accepts per hour, "
                    "latency, accuracy by SNR and by threshold.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"intentd-eval {__version__}")
    p.add_argument("--model", help="model dir (default: model.path of --config)")
    p.add_argument("--data", required=True,
                   help="audiofolder dir / CSV manifest (its test split is used) or a long "
                        "recording (wav/flac/ogg) with --truth")
    p.add_argument("--truth", help="start_s,end_s,intent CSV for a recording --data")
    p.add_argument("--out", required=True, help="report dir (report.json, report.md, PNGs)")
    p.add_argument("--config", help="daemon config.yaml (VAD, windows, verdict, threshold)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", action="append", default=[], metavar="PATH",
                   help="noise recording for the SNR conditions and the noise-only stream "
                        "(repeatable; replaces --noise-kind)")
    p.add_argument("--noise-kind", default="babble", choices=NOISE_KINDS,
                   help="generated noise for the SNR conditions and the noise-only stream: "
                        "babble = 3-6 near talkers (voices that can be made out), cafe = a "
                        "murmur of 16 far talkers with clatter (the kind of noise of the "
                        "Rhino benchmark); both from talkers training never hears")
    p.add_argument("--snrs", default="clean,24,18,12,9,6",
                   help="comma-separated conditions: clean and/or SNRs in dB")
    p.add_argument("--telephone", action="store_true",
                   help="send every stream through an 8 kHz G.711 μ-law phone line")
    p.add_argument("--fa-hours", type=float, default=1.0,
                   help="hours of noise-only and of silence-only audio for false accepts")
    p.add_argument("--fa-snr", type=float, default=12.0,
                   help="level of the noise-only stream, as an SNR (dB) against the median "
                        "speech stream")
    p.add_argument("--layout", choices=tuple(LAYOUTS), default="spread",
                   help="how commands follow each other in a stream: spread = 12 per stream, "
                        "1.5-3 s apart, 30%% with a 0.3-1.2 s pause inside; back-to-back = "
                        "24 per stream, 0.8-2 s apart, a third with a 0.6-0.9 s pause inside "
                        "(a caller or a household saying one thing after another); the "
                        "options below override its parts")
    p.add_argument("--pause-prob", type=float,
                   help="share of utterances that get an internal pause (--pause-s)")
    p.add_argument("--pause-s", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="length of those pauses, seconds")
    p.add_argument("--max-utterances", type=int, help="use at most N test utterances")
    p.add_argument("--per-stream", type=int, help="utterances per stream")
    p.add_argument("--gap-s", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="silence/noise between utterances and at the stream ends; "
                        "--per-stream 1 --gap-s 0.3 0.5 is the Rhino benchmark's "
                        "protocol: one command per file, the engine listening from its start")
    p.add_argument("--log-level", default="WARNING",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


LAYOUTS = {
    "spread": {"gap_s": [1.5, 3.0], "pause_prob": 0.3, "pause_s": [0.3, 1.2], "per_stream": 12},
    "back-to-back": {"gap_s": [0.8, 2.0], "pause_prob": 1 / 3, "pause_s": [0.6, 0.9],
                     "per_stream": 24},
}


def _check(args: argparse.Namespace) -> None:
    for key, value in LAYOUTS[args.layout].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.fa_hours < 0:
        raise ConfigError(f"--fa-hours must be >= 0, got {args.fa_hours}")
    if not 0.0 <= args.pause_prob <= 1.0:
        raise ConfigError(f"--pause-prob must be in [0, 1], got {args.pause_prob}")
    if args.max_utterances is not None and args.max_utterances < 1:
        raise ConfigError(f"--max-utterances must be >= 1, got {args.max_utterances}")
    if args.per_stream < 1:
        raise ConfigError(f"--per-stream must be >= 1, got {args.per_stream}")
    for flag in ("gap_s", "pause_s"):
        lo, hi = getattr(args, flag)
        if not 0.0 <= lo <= hi:
            raise ConfigError(f"--{flag.replace('_', '-')} MIN MAX needs 0 <= MIN <= MAX, "
                              f"got {lo:g} {hi:g}")
    is_audio = Path(args.data).suffix.lower() in AUDIO_SUFFIXES
    if is_audio and not args.truth:
        raise ConfigError(f"--data {args.data} is a recording: give its truth CSV with "
                          "--truth FILE (start_s,end_s,intent)")
    if args.truth and not is_audio:
        raise ConfigError("--truth goes with a recording --data (wav/flac/ogg), "
                          f"not {args.data}")
    if is_audio and not Path(args.data).is_file():
        raise DataError(f"{args.data}: recording not found")


def run(args: argparse.Namespace) -> int:
    from intentd.daemon.model.loader import load_backend
    from intentd.trainer.evaluation import report as report_mod
    from intentd.trainer.evaluation.run import EvalSettings, evaluate
    from intentd.trainer.evaluation.streams import (
        StreamOptions,
        build_streams,
        load_recording,
        load_utterances,
    )
    from intentd.trainer.synthesis.augment import load_noise_file

    _check(args)
    conditions = parse_conditions(args.snrs)
    cfg = load_config(args.config, {"model.path": args.model})
    noise_audio = [load_noise_file(p) for p in args.noise]
    # once, for every stream
    backend = load_backend(cfg.model.path, cfg.model.threads, cfg.model.backend)
    recording = Path(args.data).suffix.lower() in AUDIO_SUFFIXES
    if recording:
        streams = [load_recording(args.data, args.truth)]
        labels = tuple(backend.labels)
    else:
        utts, labels = load_utterances(args.data, args.max_utterances, args.seed)
        streams = build_streams(utts, args.seed, StreamOptions(
            gap_s=(args.gap_s[0], args.gap_s[1]), pause_prob=args.pause_prob,
            pause_s=(args.pause_s[0], args.pause_s[1]), per_stream=args.per_stream))
    unknown = sorted({s.intent for st in streams for s in st.spans} - set(backend.labels))
    if unknown:
        log.warning("truth intents %s are not labels of the model; they can only be wrong",
                    unknown)
    settings = EvalSettings(
        conditions=conditions, noise_kind=args.noise_kind, noise_files=tuple(args.noise),
        telephone=args.telephone, fa_hours=args.fa_hours, fa_snr_db=args.fa_snr,
        seed=args.seed, add_floor=not recording)
    result = evaluate(cfg, backend, streams, labels, settings, noise_audio)
    result["settings"].update(data=str(args.data), truth=args.truth, model_dir=str(
        cfg.model.path), layout=args.layout, pause_prob=args.pause_prob,
        pause_s=list(args.pause_s), per_stream=args.per_stream, gap_s=list(args.gap_s))
    out = Path(args.out)
    report_mod.write(result, out)
    u = result["utterance"]
    car = ("" if "command_acceptance" not in u
           else f", command acceptance {u['command_acceptance']}")
    c = result["commands"]
    print(f"intentd-eval: accuracy {u['accuracy']}{car}, macro-F1 {u['macro_f1']} on "
          f"{u['utterances']} utterances, one-to-one {c['one_to_one']}, stop to decision "
          f"p50 {c['stop_to_decision_ms_p50']} ms; report in {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # a log file gets lines, not bars
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        extras.require("intentd-eval")
        return run(args)
    except IntentdError as exc:
        print(f"intentd-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intentd-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
