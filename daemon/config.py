"""Daemon settings: frozen dataclasses, loaded from config.yaml plus command-line overrides.

Every value is validated at start-up; a bad one raises :class:`ConfigError` with one line
``FILE:LINE: section.key = VALUE is invalid; allowed: ...``. Defaults live in the
dataclasses; ``config.yaml`` at the repository root documents every key.
Parsing the file and tracking the line of each key is :mod:`intentd.daemon.config_yaml`;
what each key accepts is :mod:`intentd.daemon.config_rules`; this module holds the schema,
the inputs list and :func:`load_config`.

Inputs: the ``input:`` section is one input and, when an ``inputs:`` list is given, the
defaults of every entry in it. An entry is a string ``[NAME=]SOURCE`` or a mapping with
``source``, optional ``name`` and any other ``input.*`` key. ``--input`` (repeatable)
replaces the file's inputs. :attr:`Config.inputs` holds them resolved, one per stream,
each with its unique stream name.

Relative paths written in a config file (``model.path``, a file source, ``unix:PATH``
targets, ``output.save_utterances_dir``) are resolved against the directory of that file,
so a service can be started from any working directory. Paths given as overrides (the
command line) are taken as they are, i.e. relative to the current directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from intentd.daemon.audio.inputs import (
    SourceSpec,
    check_name,
    parse_source,
    split_name,
    unique_names,
)
from intentd.daemon.audio.windowing import WindowSpec
from intentd.daemon.config_rules import RULES, parse_hooks, typed, unknown_key
from intentd.daemon.config_yaml import ConfigContext, read_yaml
from intentd.daemon.errors import ConfigError
from intentd.daemon.output.mqtt_settings import MqttConfig
from intentd.daemon.output.targets import OutputTarget, parse_target, parse_targets
from intentd.daemon.segmentation.settings import SegmentationConfig
from intentd.daemon.telephony.settings import TelephonyConfig
from intentd.daemon.wyoming.settings import WyomingConfig

__all__ = ["Config", "InputConfig", "ModelConfig", "MqttConfig", "OutputConfig", "OutputTarget",
           "VadConfig", "WindowsConfig", "WyomingConfig", "known_keys", "load_config",
           "parse_target"]


@dataclass(frozen=True)
class InputConfig:
    source: str = "mic"  # [NAME=]SOURCE forms: intentd.daemon.audio.inputs
    rate_hz: int = 16000  # stdin only
    channels: int = 1  # stdin only
    format: str = "s16le"  # stdin only: s16le | mulaw
    realtime: bool = True  # files: pace like a live source
    block_ms: int = 30
    queue_blocks: int = 200
    name: str = ""  # the events' stream; "" = derived from the source
    wait_for_device: bool = False  # mic: wait for a device missing at start-up

    @property
    def spec(self) -> SourceSpec:
        return parse_source(self.source)

    @property
    def kind(self) -> str:
        """``"mic"``, ``"stdin"`` or ``"file"``."""
        return self.spec.kind

    @property
    def device(self) -> int | str | None:
        """Microphone device: ``None`` (system default), an index, or a name substring."""
        return self.spec.device

    @property
    def path(self) -> Path | None:
        """The audio file of a file source."""
        return self.spec.path


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
    # intentd.daemon.audio.segmenter.
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
    path: str = "demo/model"  # what examples/demo.sh trains
    threads: int = 1
    backend: str = "auto"  # window models: auto | torch | onnx | onnx-int8 (onnx_window)
    verdict: str = "utterance"  # utterance | mean | max
    threshold: float = 0.5
    top_k: int = 3
    queue_windows: int = 64  # the work queue shared by every stream, items


@dataclass(frozen=True)
class OutputConfig:
    targets: tuple[str, ...] = ("stdout",)
    unix_mode: str = "0660"
    client_buffer_events: int = 256
    speech_events: bool = False
    window_events: bool = False  # a "window" event per classified window
    stream_name: str = ""  # stream of a single unnamed input; "" = derived from the source
    stats_interval_s: float = 0.0  # a "stats" event this often; 0 = never
    metrics: str = ""  # Prometheus endpoint [HOST:]PORT (host 127.0.0.1); "" = none
    save_utterances_dir: str = ""  # debug recordings (WAV + event JSON); "" = none
    save_utterances_max_files: int = 1000
    save_utterances_max_mb: float = 200.0
    hook_timeout_s: float = 10.0  # exec: targets and hooks: a run longer than this is killed
    hook_max_running: int = 4  # hook processes at once; more wait in a queue
    hook_queue_events: int = 100  # events waiting for a hook; beyond, the oldest are dropped

    @property
    def parsed_targets(self) -> tuple[OutputTarget, ...]:
        return parse_targets(self.targets)

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
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    telephony: TelephonyConfig = field(default_factory=TelephonyConfig)
    log_level: str = "INFO"
    # intent -> argv run when it is recognized (intentd.daemon.output.hooks)
    hooks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Resolved by load_config: one entry per stream, each named. Empty: the ``input`` alone.
    inputs: tuple[InputConfig, ...] = ()

    def __post_init__(self) -> None:
        # With a server on (Wyoming, --listen), no inputs is a valid choice: its clients
        # are the streams.
        if not self.inputs and not self.wyoming.uri and not self.telephony.listen:
            name = self.input.name or self.output.stream_name
            if not name:
                try:
                    name = self.input.spec.default_name
                except ValueError:
                    name = "default"
            object.__setattr__(self, "inputs", (replace(self.input, name=name),))


_SECTIONS: dict[str, type] = {
    "input": InputConfig, "vad": VadConfig, "segmentation": SegmentationConfig,
    "windows": WindowsConfig, "model": ModelConfig, "output": OutputConfig,
    "mqtt": MqttConfig, "wyoming": WyomingConfig, "telephony": TelephonyConfig,
}
_TOP_SCALARS = ("log_level",)
INPUTS_KEY = "inputs"
HOOKS_KEY = "hooks"
_INPUTS_ALLOWED = ("a list of inputs, each [NAME=]SOURCE or a mapping with source, name and "
                   "input.* keys (a single input goes under input:)")


def known_keys() -> list[str]:
    keys = [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls)]
    return [*keys, *_TOP_SCALARS, INPUTS_KEY, HOOKS_KEY]


def _unknown(ctx: ConfigContext, key: str) -> ConfigError:
    return unknown_key(ctx, key, known_keys(), [*_SECTIONS, *_TOP_SCALARS, INPUTS_KEY,
                                                HOOKS_KEY])


# --------------------------------------------------------------------------- loading


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
    if not isinstance(value, str) or target in (str, tuple, list):
        return value
    if target is bool:
        return {"true": True, "yes": True, "false": False, "no": False}.get(value.lower(), value)
    try:
        return target(value)
    except ValueError:
        return value


def _resolve_paths(flat: dict[str, Any], base: Path) -> None:
    """Make relative paths written in the config file relative to the file's directory."""

    def res(v: str) -> str:
        return v if Path(v).is_absolute() else str(base / v)

    for key in ("model.path", "output.save_utterances_dir", "mqtt.ca_file", "mqtt.cert_file",
                "mqtt.key_file"):
        if isinstance(m := flat.get(key), str) and m:
            flat[key] = res(m)
    if isinstance(src := flat.get("input.source"), str):
        flat["input.source"] = _resolve_source(src, res)
    if isinstance(tg := flat.get("output.targets"), list):
        flat["output.targets"] = [
            "unix:" + res(t[5:]) if isinstance(t, str) and t.startswith("unix:") and t[5:] else t
            for t in tg
        ]
    if isinstance(hooks := flat.get(HOOKS_KEY), dict):
        for intent, argv in hooks.items():
            if isinstance(argv, str):
                argv = [argv]
            # A program named by a relative path ("scripts/lights") lives beside the config.
            if isinstance(argv, list) and argv and isinstance(argv[0], str) and "/" in argv[0]:
                hooks[intent] = [res(argv[0]), *argv[1:]]
    if isinstance(entries := flat.get(INPUTS_KEY), list):
        for i, e in enumerate(entries):
            if isinstance(e, str):
                name, src = split_name(e)
                src = _resolve_source(src, res)
                entries[i] = f"{name}={src}" if name else src
            elif isinstance(e, dict) and isinstance(e.get("source"), str):
                entries[i] = {**e, "source": _resolve_source(e["source"], res)}


def _resolve_source(src: str, res: Any) -> str:
    try:
        spec = parse_source(src)
    except ValueError:
        return src  # reported by validation
    return res(str(spec.path)) if spec.kind == "file" and spec.path else src


def _input_entry(i: int, entry: object, base: InputConfig, ctx: ConfigContext) -> InputConfig:
    """One ``inputs`` entry -> InputConfig (name "" when not given)."""
    where = f"inputs[{i}]"
    if isinstance(entry, str):
        name, src = split_name(entry)
        typed(where, src, ctx, rule_key="input.source")
        if name is not None:
            _check_name(where, name, ctx)
        return replace(base, source=src, name=name or "")
    if not isinstance(entry, dict):
        raise ctx.fail(where, entry, "[NAME=]SOURCE or a mapping with source, name, ...")
    kw: dict[str, Any] = {}
    for k, v in entry.items():
        key = f"input.{k}"
        if key not in RULES:
            raise unknown_key(ctx, f"{where}.{k}", [f"{where}.{f.name}" for f in
                                                     fields(InputConfig)], [])
        kw[str(k)] = typed(f"{where}.{k}", v, ctx, rule_key=key)
    if "source" not in kw:
        raise ctx.fail(where, entry, "a mapping with a source key")
    if kw.get("name"):
        _check_name(f"{where}.name", kw["name"], ctx)
    return replace(base, **kw)


def _check_name(where: str, name: str, ctx: ConfigContext) -> None:
    try:
        check_name(name)
    except ValueError as exc:
        raise ctx.fail(where, name, str(exc)) from None


def _resolve_inputs(entries: object, base: InputConfig, stream_name: str,
                    ctx: ConfigContext, wyoming: bool = False) -> tuple[InputConfig, ...]:
    if entries is None:
        inputs = [base]
    else:
        if isinstance(entries, str):
            entries = [entries]
        if wyoming and isinstance(entries, list | tuple) and not entries:
            return ()  # only the Wyoming server's connections (``inputs: []``, --wyoming)
        if not isinstance(entries, list | tuple) or not entries:
            raise ctx.fail(INPUTS_KEY, entries, _INPUTS_ALLOWED)
        inputs = [_input_entry(i, e, base, ctx) for i, e in enumerate(entries)]
    if len(inputs) == 1 and not inputs[0].name and stream_name:
        inputs[0] = replace(inputs[0], name=stream_name)
    if sum(i.kind == "stdin" for i in inputs) > 1:
        raise ctx.fail(INPUTS_KEY, [i.source for i in inputs],
                       "at most one stdin input (- can be read once)")
    try:
        names = unique_names([i.name or None for i in inputs], [i.spec for i in inputs])
    except ValueError as exc:
        raise ConfigError(f"{ctx.where(INPUTS_KEY)}: {exc}") from None
    return tuple(replace(i, name=n) for i, n in zip(inputs, names, strict=True))


def load_config(
    path: str | Path | None, overrides: Mapping[str, object] | None = None
) -> Config:
    """Load and validate settings: defaults <- config file <- overrides (dotted keys).

    Override values that are ``None`` are skipped (an option not given on the command line).
    The override ``inputs`` (a list of ``[NAME=]SOURCE``) replaces the file's inputs.
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
        flat[key] = value if key == INPUTS_KEY else _coerce_override(value, RULES[key][0])
    entries = flat.pop(INPUTS_KEY, None)
    hooks = parse_hooks(flat.pop(HOOKS_KEY, None), ctx)
    values = {key: typed(key, value, ctx) for key, value in flat.items()}
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        kw = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")}
        sections[name] = cls(**kw)
    if "log_level" in values:
        sections["log_level"] = str(values["log_level"]).upper()
    if sections["input"].name:
        _check_name("input.name", sections["input"].name, ctx)
    sections["inputs"] = _resolve_inputs(entries, sections["input"],
                                         sections["output"].stream_name, ctx,
                                         wyoming=bool(sections["wyoming"].uri
                                                       or sections["telephony"].listen))
    sections["hooks"] = hooks
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
    bad = cfg.segmentation.problem(v.min_pause_ms, v.min_silence_ms, v.frame_ms)
    if bad is not None:
        raise ctx.fail(*bad)
    if w.hop_s > w.window_s:
        raise ctx.fail("windows.hop_s", w.hop_s, f"<= windows.window_s ({w.window_s:g})")
    try:
        parse_targets(cfg.output.targets)
    except ValueError as exc:
        raise ctx.fail("output.targets", list(cfg.output.targets), str(exc)) from None
