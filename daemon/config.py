"""Daemon settings: frozen dataclasses, loaded from config.yaml plus command-line overrides.

Every value is validated at start-up; a bad one raises :class:`ConfigError` with one line
``FILE:LINE: section.key = VALUE is invalid; allowed: ...``. Defaults live in the
dataclasses; ``config.yaml`` at the repository root documents every key.
Parsing the file and tracking the line of each key is :mod:`intentd.daemon.config_yaml`;
this module holds the schema, the validation rules and :func:`load_config`.

Relative paths written in a config file (``model.path``, a file ``input.source``,
``unix:PATH`` targets) are resolved against the directory of that file, so a service can
be started from any working directory. Paths given as overrides (the command line) are
taken as they are, i.e. relative to the current directory.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from intentd.daemon.config_yaml import ConfigContext, read_yaml
from intentd.daemon.errors import ConfigError
from intentd.daemon.audio.windowing import WindowSpec

INPUT_FORMATS = ("s16le", "mulaw")
VAD_FRAME_MS = (10, 20, 30)
VERDICTS = ("utterance", "mean", "max")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_UNIX_MODE_RE = re.compile(r"^0?[0-7]{3}$")
_MODE_ALLOWED = 'an octal mode as a quoted string, e.g. "0660"'
_SOURCE_ALLOWED = "mic | mic:DEVICE | path to a wav/flac/ogg file | - (raw PCM on stdin)"


@dataclass(frozen=True)
class InputConfig:
    source: str = "mic"  # mic | mic:DEVICE | path to wav/flac/ogg | "-" (stdin raw PCM)
    rate_hz: int = 16000  # stdin only
    channels: int = 1  # stdin only
    format: str = "s16le"  # stdin only: s16le | mulaw
    realtime: bool = True  # files: pace like a live source
    block_ms: int = 30
    queue_blocks: int = 200

    @property
    def kind(self) -> str:
        """``"mic"``, ``"stdin"`` or ``"file"``."""
        if self.source == "mic" or self.source.startswith("mic:"):
            return "mic"
        if self.source in ("-", "stdin"):
            return "stdin"
        return "file"

    @property
    def device(self) -> int | str | None:
        """Microphone device: ``None`` (system default), an index, or a name substring."""
        if self.kind != "mic" or self.source == "mic":
            return None
        dev = self.source[len("mic:") :]
        return int(dev) if dev.isdigit() else dev

    @property
    def path(self) -> Path | None:
        """The audio file of a file source."""
        if self.kind != "file":
            return None
        src = self.source[len("file:") :] if self.source.startswith("file:") else self.source
        return Path(src)


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad 0..3
    frame_ms: int = 30  # 10 | 20 | 30
    speech_pad_ms: int = 300
    trigger_ratio: float = 0.6
    trigger_window_ms: int = 300
    min_silence_ms: int = 1300
    min_speech_ms: int = 250
    max_utterance_s: float = 15.0
    noise_gate_db: float = 10.0  # dB above the noise floor speech must reach to count; 0: off
    # Longer pauses inside an utterance reach the classifier shortened to this (0: whole):
    # daemon.segmenter.
    max_pause_ms: int = 60
    # Only silences at least this long are pauses (shorter ones are the speech's own gaps).
    min_pause_ms: int = 300


@dataclass(frozen=True)
class WindowsConfig:
    window_s: float = 1.0
    hop_s: float = 0.5

    def spec(self, sample_rate_hz: int = 16000) -> WindowSpec:
        return WindowSpec(window_s=self.window_s, hop_s=self.hop_s, sample_rate_hz=sample_rate_hz)


@dataclass(frozen=True)
class ModelConfig:
    path: str = "models/banking"
    threads: int = 1
    verdict: str = "utterance"  # utterance | mean | max
    threshold: float = 0.5
    top_k: int = 3
    queue_windows: int = 64


@dataclass(frozen=True)
class OutputTarget:
    """One parsed ``output.targets`` entry."""

    kind: str  # "stdout" | "unix" | "tcp"
    path: str | None = None  # unix
    host: str | None = None  # tcp
    port: int | None = None  # tcp

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp":
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        return self.kind


@dataclass(frozen=True)
class OutputConfig:
    targets: tuple[str, ...] = ("stdout",)
    unix_mode: str = "0660"
    client_buffer_events: int = 256
    speech_events: bool = False
    stream_name: str = "default"

    @property
    def parsed_targets(self) -> tuple[OutputTarget, ...]:
        return tuple(parse_target(t) for t in self.targets)

    @property
    def unix_mode_int(self) -> int:
        return int(self.unix_mode, 8)


@dataclass(frozen=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    log_level: str = "INFO"


_SECTIONS: dict[str, type] = {
    "input": InputConfig, "vad": VadConfig, "windows": WindowsConfig, "model": ModelConfig,
    "output": OutputConfig,
}
_TOP_SCALARS = ("log_level",)


def known_keys() -> list[str]:
    keys = [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls)]
    return keys + list(_TOP_SCALARS)


def parse_target(text: str) -> OutputTarget:
    """Parse ``stdout`` | ``unix:PATH`` | ``tcp:HOST:PORT``; ValueError says what is allowed."""
    if text == "stdout":
        return OutputTarget("stdout")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path, e.g. unix:/run/intentd.sock")
        return OutputTarget("unix", path=path)
    if text.startswith("tcp:"):
        host, sep, port_s = text[len("tcp:") :].rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise ValueError("tcp:HOST:PORT with PORT 1-65535, e.g. tcp:127.0.0.1:7700")
        return OutputTarget("tcp", host=host, port=int(port_s))
    raise ValueError("stdout | unix:PATH | tcp:HOST:PORT")


# --------------------------------------------------------------------------- loading


def _unknown(ctx: ConfigContext, key: str) -> ConfigError:
    known = known_keys()
    match = []
    if "." not in key:  # a misspelt section or top-level key
        match = difflib.get_close_matches(key, [*_SECTIONS, *_TOP_SCALARS], n=1, cutoff=0.6)
    match = match or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not match:
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in known} | {s: s for s in _SECTIONS}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        match = [by_leaf[leaf_match[0]]] if leaf_match else []
    hint = f"; did you mean {match[0]}?" if match else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{ctx.where(key)}: unknown key {key}{hint}")


def _flatten(data: Mapping[str, Any], ctx: ConfigContext) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for top, value in data.items():
        top = str(top)
        if top in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{ctx.where(top)}: {top} = {value!r} is invalid; allowed: a mapping of"
                    f" {top}.* keys"
                )
            for k, v in value.items():
                flat[f"{top}.{k}"] = v
        else:
            flat[top] = value
    known = set(known_keys())
    for key in flat:
        if key not in known:
            raise _unknown(ctx, key)
    return flat


def _coerce_override(value: object, target: type) -> object:
    """Command-line values arrive as strings; turn them into the field's type when possible."""
    if not isinstance(value, str) or target in (str, tuple):
        return value
    if target is bool:
        return {"true": True, "yes": True, "false": False, "no": False}.get(value.lower(), value)
    try:
        return target(value)
    except ValueError:
        return value


# --------------------------------------------------------------------------- validation

_Check = Callable[[Any], bool]


def _int(lo: int, hi: int | None = None) -> tuple[type, _Check, str]:
    allowed = f"an integer {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
    return int, lambda v: v >= lo and (hi is None or v <= hi), allowed


def _float(lo: float, hi: float, lo_open: bool = False) -> tuple[type, _Check, str]:
    op = ">" if lo_open else ">="
    allowed = f"a number {op} {lo:g} and <= {hi:g}"
    return float, lambda v: (v > lo if lo_open else v >= lo) and v <= hi, allowed


def _choice(options: tuple[Any, ...], typ: type = str) -> tuple[type, _Check, str]:
    return typ, lambda v: v in options, ", ".join(str(o) for o in options)


_RULES: dict[str, tuple[type, _Check, str]] = {
    "input.source": (str, lambda v: v not in ("", "mic:", "file:"), _SOURCE_ALLOWED),
    "input.rate_hz": _int(1000, 384000),
    "input.channels": _int(1, 32),
    "input.format": _choice(INPUT_FORMATS),
    "input.realtime": (bool, lambda v: True, "true or false"),
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
    "windows.window_s": _float(0.0, 60.0, lo_open=True),
    "windows.hop_s": _float(0.0, 60.0, lo_open=True),
    "model.path": (str, bool, "a model directory"),
    "model.threads": _int(1, 256),
    "model.verdict": _choice(VERDICTS),
    "model.threshold": _float(0.0, 1.0),
    "model.top_k": _int(1, 1000),
    "model.queue_windows": _int(1, 100000),
    "output.targets": (tuple, lambda v: len(v) > 0, "a non-empty list of targets"),
    "output.unix_mode": (str, _UNIX_MODE_RE.match, _MODE_ALLOWED),
    "output.client_buffer_events": _int(1, 10_000_000),
    "output.speech_events": (bool, lambda v: True, "true or false"),
    "output.stream_name": (str, str.strip, "a non-empty name"),
    "log_level": (str, lambda v: v.upper() in LOG_LEVELS, ", ".join(LOG_LEVELS)),
}


def _typed(key: str, value: object, ctx: ConfigContext) -> object:
    typ, check, allowed = _RULES[key]
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
    else:
        # (An unquoted unix_mode 0660 is read by YAML 1.1 as the octal integer 432.)
        ok = isinstance(value, str)
    if not ok or not check(value):
        raise ctx.fail(key, value, allowed)
    return value


def _resolve_paths(flat: dict[str, Any], base: Path) -> None:
    """Make relative paths written in the config file relative to the file's directory."""

    def res(v: str) -> str:
        return v if Path(v).is_absolute() else str(base / v)

    if isinstance(m := flat.get("model.path"), str) and m:
        flat["model.path"] = res(m)
    if isinstance(src := flat.get("input.source"), str) and InputConfig(src).kind == "file":
        flat["input.source"] = res(src)
    if isinstance(tg := flat.get("output.targets"), list):
        flat["output.targets"] = [
            "unix:" + res(t[5:]) if isinstance(t, str) and t.startswith("unix:") and t[5:] else t
            for t in tg
        ]


def load_config(
    path: str | Path | None, overrides: Mapping[str, object] | None = None
) -> Config:
    """Load and validate settings: defaults <- config file <- overrides (dotted keys).

    Override values that are ``None`` are skipped (an option not given on the command line).
    """
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        data, lines = read_yaml(Path(path))
    ctx = ConfigContext(str(path) if path is not None else "defaults", lines)
    flat = _flatten(data, ctx)
    if path is not None:
        _resolve_paths(flat, Path(path).resolve().parent)
    known = set(known_keys())
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        ctx.from_override.add(key)
        if key not in known:
            raise _unknown(ctx, key)
        flat[key] = _coerce_override(value, _RULES[key][0])
    values = {key: _typed(key, value, ctx) for key, value in flat.items()}
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        kw = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")}
        sections[name] = cls(**kw)
    if "log_level" in values:
        sections["log_level"] = str(values["log_level"]).upper()
    cfg = Config(**sections)
    _cross_check(cfg, ctx)
    return cfg


def _cross_check(cfg: Config, ctx: ConfigContext) -> None:
    v, w = cfg.vad, cfg.windows
    for key in ("trigger_window_ms", "min_silence_ms"):
        if getattr(v, key) < v.frame_ms:
            raise ctx.fail(f"vad.{key}", getattr(v, key), f">= vad.frame_ms ({v.frame_ms})")
    if 0 < v.max_pause_ms < 2 * v.frame_ms:
        raise ctx.fail("vad.max_pause_ms", v.max_pause_ms,
                       f"0 (pauses kept whole) or >= 2 * vad.frame_ms ({2 * v.frame_ms})")
    floor_s = (v.trigger_window_ms + v.speech_pad_ms + v.frame_ms) / 1000
    if v.max_utterance_s <= floor_s:
        allowed = f"> vad.trigger_window_ms + speech_pad_ms + frame_ms ({floor_s:g} s)"
        raise ctx.fail("vad.max_utterance_s", v.max_utterance_s, allowed)
    if w.hop_s > w.window_s:
        raise ctx.fail("windows.hop_s", w.hop_s, f"<= windows.window_s ({w.window_s:g})")
