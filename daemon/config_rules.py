"""What each config key accepts: one rule per dotted key, and the check that applies it.

Kept apart from the schema (:mod:`intentd.daemon.config`) so that the rules read as one
table. A rule is ``(type, check, allowed)``: the value must have the type, pass the check,
and ``allowed`` is what the error message offers instead.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable

from intentd.daemon.audio.inputs import FORMS as SOURCE_FORMS
from intentd.daemon.audio.inputs import parse_source
from intentd.daemon.config_yaml import ConfigContext
from intentd.daemon.errors import ConfigError
from intentd.daemon.model.onnx_window import BACKENDS
from intentd.daemon.output.metrics import parse_listen
from intentd.daemon.output.targets import parse_target
from intentd.daemon.segmentation.settings import MODES as SEGMENTATION_MODES
from intentd.daemon.telephony.settings import FORMS as LISTEN_FORMS
from intentd.daemon.telephony.settings import parse_listens
from intentd.daemon.wyoming.settings import FORMS as WYOMING_FORMS
from intentd.daemon.wyoming.settings import parse_uri

INPUT_FORMATS = ("s16le", "mulaw")
VAD_FRAME_MS = (10, 20, 30)
VERDICTS = ("utterance", "mean", "max")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_UNIX_MODE_RE = re.compile(r"^0?[0-7]{3}$")
_MODE_ALLOWED = ('an octal mode as a quoted string, not writable by others (any local user '
                 'could connect and read every event), e.g. "0660"')

Check = Callable[[object], bool]
Rule = tuple[type, Check, str]


def _int(lo: int, hi: int | None = None) -> Rule:
    allowed = f"an integer {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
    return int, lambda v: v >= lo and (hi is None or v <= hi), allowed  # type: ignore[operator]


def _float(lo: float, hi: float, lo_open: bool = False) -> Rule:
    op = ">" if lo_open else ">="
    allowed = f"a number {op} {lo:g} and <= {hi:g}"
    return float, lambda v: (v > lo if lo_open else v >= lo) and v <= hi, allowed  # type: ignore[operator]


def _choice(options: tuple[object, ...], typ: type = str) -> Rule:
    return typ, lambda v: v in options, ", ".join(str(o) for o in options)


def _parses(parse: Callable[[str], object]) -> Check:
    def check(v: object) -> bool:
        try:
            parse(v)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    return check


_ANY: Check = lambda v: True  # noqa: E731


def _listen_ok(v: str) -> bool:
    try:
        parse_listen(v)
    except ConfigError:
        return False
    return True

RULES: dict[str, Rule] = {
    "input.source": (str, _parses(parse_source), SOURCE_FORMS),
    "input.name": (str, lambda v: True, "a stream name"),
    "input.rate_hz": _int(1000, 384000),
    "input.wait_for_device": (bool, _ANY, "true or false"),
    "input.channels": _int(1, 32),
    "input.format": _choice(INPUT_FORMATS),
    "input.realtime": (bool, _ANY, "true or false"),
    "input.block_ms": _int(5, 1000),
    "input.queue_blocks": _int(1, 100000),
    "vad.aggressiveness": _choice((0, 1, 2, 3), int),
    "vad.frame_ms": _choice(VAD_FRAME_MS, int),
    "vad.speech_pad_ms": _int(0, 5000),
    "vad.trigger_ratio": _float(0.0, 1.0, lo_open=True),
    "vad.trigger_window_ms": _int(10, 5000),
    "vad.min_silence_ms": _int(10, 60000),
    "vad.min_speech_ms": _int(0, 60000),
    "vad.max_utterance_s": _float(1.0, 3600.0),
    "vad.noise_gate_db": _float(0.0, 40.0),
    "vad.max_pause_ms": _int(0, 60000),
    "vad.min_pause_ms": _int(0, 60000),
    "segmentation.mode": _choice(SEGMENTATION_MODES),
    "segmentation.early_after_ms": _int(0, 60000),
    "segmentation.early_score": _float(0.0, 1.0),
    "segmentation.split_score": _float(0.0, 1.0),
    "windows.window_s": _float(0.0, 60.0, lo_open=True),
    "windows.hop_s": _float(0.0, 60.0, lo_open=True),
    "model.path": (str, bool, "a model directory"),
    "model.threads": _int(1, 256),
    "model.backend": _choice(BACKENDS),
    "model.verdict": _choice(VERDICTS),
    "model.threshold": _float(0.0, 1.0),
    "model.top_k": _int(1, 1000),
    "model.queue_windows": _int(1, 100000),
    "output.targets": (tuple, lambda v: len(v) > 0, "a non-empty list of targets"),  # type: ignore[arg-type]
    "output.unix_mode": (str, lambda v: bool(_UNIX_MODE_RE.match(v))  # type: ignore[arg-type]
                         and not int(v, 8) & 0o002, _MODE_ALLOWED),
    "output.client_buffer_events": _int(1, 10_000_000),
    "output.speech_events": (bool, _ANY, "true or false"),
    "output.window_events": (bool, _ANY, "true or false"),
    "output.stream_name": (str, _ANY, "a stream name"),
    "output.stats_interval_s": _float(0.0, 86400.0),
    "output.save_utterances_dir": (str, _ANY, "a directory path, or \"\" for none"),
    "output.save_utterances_max_files": _int(1, 10_000_000),
    "output.save_utterances_max_mb": _float(0.0, 1e7, lo_open=True),
    "output.metrics": (str, lambda v: v == "" or _listen_ok(v),  # type: ignore[arg-type]
                       "[HOST:]PORT, e.g. 9750 or 127.0.0.1:9750, or \"\" for none"),
    "output.hook_timeout_s": _float(0.0, 86400.0, lo_open=True),
    "output.hook_max_running": _int(1, 256),
    "output.hook_queue_events": _int(1, 1_000_000),
    "mqtt.qos": _choice((0, 1, 2), int),
    "mqtt.retain": (bool, _ANY, "true or false"),
    "mqtt.hermes": (bool, _ANY, "true or false"),
    "mqtt.events": (bool, _ANY, "true or false"),
    "mqtt.topic_prefix": (str, lambda v: bool(v) and not set(v) & set("#+")  # type: ignore[arg-type]
                          and not v.startswith("/") and not v.endswith("/"),  # type: ignore[attr-defined]
                          "a topic without wildcards or leading/trailing /, e.g. intentd"),
    "mqtt.site_id": (str, lambda v: not set(v) & set("#+/"),  # type: ignore[arg-type]
                     "a site name without # + /, or \"\" for the stream's name"),
    "mqtt.lang": (str, _ANY, "a language code such as en, or \"\""),
    "mqtt.client_id": (str, lambda v: len(v) <= 128, "at most 128 characters"),  # type: ignore[arg-type]
    "mqtt.username": (str, _ANY, "a user name, or \"\""),
    "mqtt.password": (str, _ANY, "a password, or \"\""),
    "mqtt.ca_file": (str, _ANY, "a PEM file path, or \"\" for the system's CAs"),
    "mqtt.cert_file": (str, _ANY, "a PEM file path, or \"\""),
    "mqtt.key_file": (str, _ANY, "a PEM file path, or \"\""),
    "mqtt.keepalive_s": _int(5, 65535),
    "mqtt.queue_events": _int(1, 10_000_000),
    "mqtt.reconnect_max_s": _float(1.0, 3600.0),
    "wyoming.uri": (str, lambda v: v == "" or _parses(parse_uri)(v),
                    f"{WYOMING_FORMS}, e.g. tcp://0.0.0.0:10300, or \"\" for off"),
    "wyoming.max_clients": _int(1, 10000),
    "wyoming.languages": (list, lambda v: len(v) > 0 and all(v),  # type: ignore[arg-type]
                          "a non-empty list of language codes, e.g. [en]"),
    "telephony.listen": (list, _parses(parse_listens),
                         f"a list of {LISTEN_FORMS}, e.g. [ws://0.0.0.0:8765/media], or []"),
    "telephony.max_streams": _int(1, 100000),
    "telephony.start_timeout_s": _float(0.0, 3600.0, lo_open=True),
    "telephony.idle_timeout_s": _float(0.0, 86400.0, lo_open=True),
    "telephony.max_gap_s": _float(0.0, 3600.0),
    "telephony.block_ms": _int(10, 1000),
    "log_level": (str, lambda v: v.upper() in LOG_LEVELS, ", ".join(LOG_LEVELS)),  # type: ignore[attr-defined]
}


def typed(key: str, value: object, ctx: ConfigContext, rule_key: str | None = None) -> object:
    """``value`` checked against the rule of ``rule_key`` (default ``key``), as its type."""
    typ, check, allowed = RULES[rule_key or key]
    if typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(float(value))  # type: ignore[arg-type]
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif typ is bool:
        ok = isinstance(value, bool)
    elif typ is tuple:
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list | tuple) and all(isinstance(t, str) for t in value)
        for t in value if ok else ():  # type: ignore[union-attr]
            try:
                parse_target(t)
            except ValueError as exc:
                raise ctx.fail(key, t, str(exc)) from None
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    elif typ is list:  # of strings, kept as a tuple (settings are frozen)
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list | tuple) and all(isinstance(t, str) for t in value)
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    else:
        # (An unquoted unix_mode 0660 is read by YAML 1.1 as the octal integer 432.)
        ok = isinstance(value, str)
    if not ok or not check(value):
        raise ctx.fail(key, value, allowed)
    return value


def unknown_key(ctx: ConfigContext, key: str, known: Iterable[str],
                top_names: Iterable[str]) -> ConfigError:
    """The error for a key nobody reads, with the closest known key as a hint."""
    known = list(known)
    match: list[str] = []
    if "." not in key:  # a misspelt section or top-level key
        match = difflib.get_close_matches(key, list(top_names), n=1, cutoff=0.6)
    match = match or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not match:
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in known}
        by_leaf |= {s: s for s in top_names}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        match = [by_leaf[leaf_match[0]]] if leaf_match else []
    hint = f"; did you mean {match[0]}?" if match else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{ctx.where(key)}: unknown key {key}{hint}")


_HOOKS_ALLOWED = ("a mapping of intent -> program and arguments as a list, e.g. "
                  "lights_on: [/usr/local/bin/lights, on]")


def parse_hooks(entries: object, ctx: ConfigContext) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``hooks:`` -> ((intent, argv), ...); a bare string is a program without arguments.
    Programs are looked up when the hooks start (:mod:`intentd.daemon.output.hooks`)."""
    if entries is None:
        return ()
    if not isinstance(entries, dict):
        raise ctx.fail("hooks", entries, _HOOKS_ALLOWED)
    out = []
    for intent, argv in entries.items():
        where = f"hooks.{intent}"
        if isinstance(argv, str):
            argv = [argv]
        if (not isinstance(argv, list) or not argv
                or not all(isinstance(a, str | int | float) and not isinstance(a, bool)
                           for a in argv) or not str(argv[0]).strip()):
            raise ctx.fail(where, argv, "a list: the program, then its arguments (no shell), "
                                        "e.g. [/usr/local/bin/lights, on]")
        out.append((str(intent), tuple(str(a) for a in argv)))
    return tuple(out)
