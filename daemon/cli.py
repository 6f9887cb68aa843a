"""``intentd``: the daemon's command line.

stdout carries only event JSON lines. To make that hold even when a library prints, the
original stdout descriptor is kept for the stdout sink and descriptor 1 is pointed at
stderr before anything heavy is imported; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from intentd.daemon import __version__
from intentd.daemon.errors import ConfigError, IntentdError

if TYPE_CHECKING:
    from intentd.daemon.config import Config
    from intentd.daemon.engine.supervisor import Supervisor

log = logging.getLogger("intentd")

DEFAULT_CONFIG = "config.yaml"
EPILOG = """examples:
  intentd --model models/home --input mic
  intentd --model models/home --input kitchen=mic:USB --input hall=mic:2
  intentd --model models/bank --input line7=calls/7.wav --input line8=calls/8.wav --no-realtime
  arecord -q -f S16_LE -r 16000 -c 1 | intentd --model models/home --input -
  intentd --model models/home --output unix:/run/intentd/events.sock
  intentd --model models/home --wyoming tcp://0.0.0.0:10300    (Home Assistant)
  intentd --model models/bank --listen ws://0.0.0.0:8765/media   (phone calls: Twilio & co)
  intentd --check-config --config /etc/intentd/config.yaml

signals: SIGTERM/SIGINT finish the current utterances and stop; SIGHUP re-reads the config
file and the model dir and swaps them in between utterances (inputs and socket clients stay;
a config or model that fails to load is refused with one log line and the old one runs on);
SIGUSR1 logs the status of every stream and the worker.

exit codes: 0 ok; 2 bad usage, config or input (one line on stderr says what and how to
fix it); 1 an internal failure (the log has the details)."""


class _StopBeforeStart(Exception):
    """SIGINT/SIGTERM arrived while still starting up."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="intentd",
        description="Offline streaming speech-to-intent daemon: audio in, JSON lines out. "
                    "Several inputs run in one process and share the model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="PATH",
                   help=f"settings file (default: ./{DEFAULT_CONFIG} if it exists, "
                        "else built-in defaults)")
    p.add_argument("--model", metavar="DIR", help="model directory (model.path)")
    p.add_argument("--input", action="append", metavar="[NAME=]SRC",
                   help="mic | mic:DEVICE | FILE (wav/flac/ogg) | - (raw PCM on stdin); "
                        "repeat for several streams; NAME is the events' stream (default: "
                        "derived from the source)")
    p.add_argument("--input-rate", type=int, metavar="HZ",
                   help="stdin only: sample rate of the raw PCM")
    p.add_argument("--input-channels", type=int, metavar="N",
                   help="stdin only: interleaved channels")
    p.add_argument("--input-format", choices=("s16le", "mulaw"), help="stdin only: encoding")
    p.add_argument("--output", action="append", metavar="TARGET",
                   help="stdout | unix:PATH | tcp:HOST:PORT (repeat for several)")
    p.add_argument("--wyoming", metavar="URI",
                   help="serve Home Assistant's Wyoming protocol: tcp://HOST:PORT (e.g. "
                        "tcp://0.0.0.0:10300) or unix://PATH (wyoming.uri); without --input "
                        "no local input is opened")
    p.add_argument("--listen", action="append", metavar="URI",
                   help="take streams over the network (telephony.listen): ws://HOST:PORT/PATH "
                        "(media streams of Twilio, Telnyx, SignalWire; a stream per call track)"
                        " or tcp://HOST:PORT (a JSON header line, then raw audio); repeatable;"
                        " without --input no local input is opened")
    p.add_argument("--list-devices", action="store_true",
                   help="list audio capture devices and exit")
    p.add_argument("--check-config", action="store_true",
                   help="validate the settings and load the model they name, then exit "
                        "(0: valid, 2: not); opens no input or output")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="files: pace like a live source (default from config: yes)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="below this probability the event is no_match")
    p.add_argument("--verdict", choices=("utterance", "mean", "max"),
                   help="how window evidence becomes one verdict")
    p.add_argument("--backend", metavar="NAME",
                   help="window models' runtime (model.backend): auto | torch | onnx | "
                        "onnx-int8")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG | INFO | WARNING | ERROR")
    p.add_argument("--version", action="version", version=f"intentd {__version__}")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys for the options given (None = not given)."""
    return {
        "model.path": args.model,
        # --wyoming / --listen alone: the clients are the streams (no microphone opened).
        "inputs": list(args.input) if args.input else [] if args.wyoming or args.listen
        else None,
        "input.rate_hz": args.input_rate,
        "input.channels": args.input_channels,
        "input.format": args.input_format,
        "input.realtime": args.realtime,
        "output.targets": list(args.output) if args.output else None,
        "wyoming.uri": args.wyoming,
        "telephony.listen": list(args.listen) if args.listen else None,
        "model.threshold": args.threshold,
        "model.verdict": args.verdict,
        "model.backend": args.backend,
        "log_level": args.log_level.upper() if args.log_level else None,
    }


def _event_stdout(cfg: Config) -> TextIO | None:
    """A private handle on the real stdout; fd 1 then goes to stderr for stray prints.
    None when the process has no stdout (started with ``>&-``)."""
    if sys.stdout is None:
        if any(t.kind == "stdout" for t in cfg.output.parsed_targets):
            raise ConfigError("stdout is closed, so events cannot go there; redirect it "
                              "(> FILE) or pass --output unix:PATH or --output tcp:HOST:PORT")
        # Hold descriptor 1 with /dev/null: a socket opened later would get it otherwise,
        # and a library's stray print would land among a client's events.
        with contextlib.suppress(OSError):
            fd = os.open(os.devnull, os.O_WRONLY)
            if fd != 1:
                os.close(fd)
        return None
    try:
        sys.stdout.flush()
        fd = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return sys.stdout  # no real descriptors (embedded use): keep the stream as it is
    return open(fd, "w", encoding="utf-8", buffering=1, closefd=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging("INFO")  # until the config (which validates log_level) is loaded
    if not sys.stderr.isatty():
        # A journal or a log file gets log lines, not progress bars (tqdm reads this, and
        # so do the bars transformers draws while loading weights).
        os.environ.setdefault("TQDM_DISABLE", "1")
    # oneDNN caches a compiled primitive per input shape, up to 1024 by default; every
    # utterance length is a new shape, so a long-running daemon grew by ~45 MB over 3 h of
    # audio (bench/soak.py: 8.2%). 32 keeps it flat (1.6%) at the same speed.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")
    if args.list_devices:
        from intentd.daemon.audio.mic import list_devices

        print(list_devices())
        return 0

    from intentd.daemon.config import load_config

    config_path = args.config
    if config_path is None and Path(DEFAULT_CONFIG).is_file():
        config_path = DEFAULT_CONFIG
    overrides = overrides_from_args(args)
    cfg = load_config(config_path, overrides)
    _setup_logging(cfg.log_level)
    if args.check_config:
        return _check_config(cfg, config_path)
    log.info("intentd %s starting (config: %s)", __version__, config_path or "built-in defaults")

    from intentd.daemon.engine.supervisor import Supervisor

    out = _event_stdout(cfg)
    supervisor: Supervisor | None = None
    stops = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if supervisor is None or not supervisor.ready.is_set():
            raise _StopBeforeStart  # still loading: nothing heard yet, nothing to finish
        if stops > 1:
            os._exit(130 if signum == signal.SIGINT else 143)  # second signal: now
        supervisor.request_stop()

    reloading = threading.Lock()

    def reload_now() -> None:
        assert supervisor is not None
        with reloading:
            supervisor.notifier.reloading()
            try:
                new = load_config(config_path, overrides)
                supervisor.reload(new, reload_model=True)
                logging.getLogger().setLevel(new.log_level)
                log.info("reload: %s and model %s swapped in between utterances",
                         config_path or "built-in defaults", new.model.path)
            except IntentdError as exc:
                log.error("reload: %s; the running settings and model stay", exc)
            except Exception:
                log.exception("reload failed; the running settings and model stay")
            finally:
                supervisor.notifier.ready(supervisor.status_line())

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        # The model loads for seconds: never in the handler, never twice at once.
        if supervisor is not None and supervisor.ready.is_set() and not reloading.locked():
            threading.Thread(target=reload_now, name="reload", daemon=True).start()
        else:
            threading.Thread(target=log.warning, args=(
                "reload: ignored (still starting, or a reload is running)",), daemon=True).start()

    def on_usr1(_signum: int, _frame: FrameType | None) -> None:
        if supervisor is not None:
            threading.Thread(target=lambda: log.info("status: %s", json.dumps(
                supervisor.status(), default=str)), daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)
    supervisor = Supervisor(cfg, stdout=out)
    try:
        # The inputs are checked before the model loads (seconds), so a typo fails at once.
        supervisor.open_inputs()
        supervisor.load_model()
        supervisor.open_outputs()
        code = supervisor.run()
    except BaseException:
        if supervisor.router is not None:
            supervisor.router.close()  # never leave a socket file behind
        raise
    if out is not None:
        with contextlib.suppress(OSError, ValueError):
            out.flush()
    return code


def _check_config(cfg: Config, config_path: str | None) -> int:
    """``--check-config``: the settings are valid (load_config raised otherwise); the model
    they name must load too."""
    from intentd.daemon.model.loader import load_backend

    backend = load_backend(cfg.model.path, cfg.model.threads, cfg.model.backend)
    space = getattr(backend, "slot_space", None)
    print(f"intentd: {config_path or 'built-in defaults'} is valid; model {cfg.model.path}: "
          f"{len(backend.labels)} labels" + (f", slots {', '.join(space.names)}" if space
                                             else "")
          + f"; inputs {', '.join(f'{i.name}={i.source}' for i in cfg.inputs)}; outputs "
          f"{', '.join(cfg.output.targets)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point. Called as a program (``argv`` None) the process ends with ``os._exit``
    once every event and log line is flushed: interpreter teardown of torch/onnxruntime
    takes seconds, and a service must be gone within 2 s of SIGTERM. With an explicit
    ``argv`` (tests, embedding) it returns the exit code instead."""
    try:
        code = _run(argv)
    except IntentdError as exc:
        print(f"intentd: error: {exc}", file=sys.stderr)
        code = 2
    except _StopBeforeStart:
        log.info("stopped during start-up")
        code = 0
    except KeyboardInterrupt:
        code = 130
    if argv is None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
