"""config.yaml loading, overrides and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from intentd.daemon.audio.windowing import WindowSpec
from intentd.daemon.config import (
    Config,
    InputConfig,
    ModelConfig,
    OutputTarget,
    known_keys,
    load_config,
    parse_target,
)
from intentd.daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def error(tmp_path: Path, text: str, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), overrides)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_defaults_without_file():
    assert load_config(None) == Config()


def test_shipped_config_yaml_equals_defaults_and_documents_every_key():
    cfg = load_config(REPO / "config.yaml")
    assert cfg == Config(model=ModelConfig(path=str(REPO / "demo" / "model")))
    data = yaml.safe_load((REPO / "config.yaml").read_text())
    whole = ("hooks",)  # a mapping of the user's intents, not of known keys
    keys = {f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) and s not in whole
            for k in v}
    keys |= {k for k, v in data.items() if not isinstance(v, dict) or k in whole}
    assert keys == set(known_keys())
    for line in (REPO / "config.yaml").read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.endswith(":"):
            assert "#" in line, f"undocumented: {line}"


def test_values_and_overrides(tmp_path: Path):
    p = write(tmp_path, "vad:\n  min_silence_ms: 800\nmodel:\n  threshold: 0.7\n")
    cfg = load_config(p, {
        "model.path": "m/dir",  # override: relative to the current directory
        "model.threshold": "0.25",  # command-line strings are converted
        "input.realtime": "false",
        "input.rate_hz": 8000,
        "output.targets": ["stdout", "tcp:127.0.0.1:7700"],
        "log_level": "debug",
        "model.top_k": None,  # not given on the command line: ignored
    })
    assert cfg.vad.min_silence_ms == 800
    assert (cfg.model.path, cfg.model.threshold, cfg.model.top_k) == ("m/dir", 0.25, 3)
    assert cfg.input.realtime is False and cfg.input.rate_hz == 8000
    assert cfg.output.targets == ("stdout", "tcp:127.0.0.1:7700")
    assert cfg.log_level == "DEBUG"
    assert load_config(None, {"output.targets": "unix:/tmp/s"}).output.targets == ("unix:/tmp/s",)


def test_relative_paths_in_file_resolve_against_its_directory(tmp_path: Path):
    p = write(tmp_path, "input:\n  source: a.wav\nmodel:\n  path: models/x\n"
                        "output:\n  targets: [stdout, unix:run/s.sock, unix:/abs.sock]\n")
    cfg = load_config(p)
    assert cfg.input.source == str(tmp_path / "a.wav")
    assert cfg.model.path == str(tmp_path / "models/x")
    assert cfg.output.targets == ("stdout", f"unix:{tmp_path}/run/s.sock", "unix:/abs.sock")
    assert load_config(p, {"input.source": "b.wav"}).input.source == "b.wav"
    assert load_config(write(tmp_path, "input:\n  source: mic:1\n")).input.source == "mic:1"


def test_empty_file_and_empty_section(tmp_path: Path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "vad:\n# nothing\n")) == Config()


@pytest.mark.parametrize(
    ("source", "kind", "device", "path"),
    [
        ("mic", "mic", None, None),
        ("mic:2", "mic", 2, None),
        ("mic:USB Audio", "mic", "USB Audio", None),
        ("-", "stdin", None, None),
        ("stdin", "stdin", None, None),
        ("call.wav", "file", None, Path("call.wav")),
        ("file:mic", "file", None, Path("mic")),
    ],
)
def test_input_source_parsing(source, kind, device, path):
    c = InputConfig(source=source)
    assert (c.kind, c.device, c.path) == (kind, device, path)


def test_inputs_errors_name_the_entry_line(tmp_path: Path):
    assert error(tmp_path, "inputs:\n  - mic\n  - {name: x, source: mic:1, block_ms: 0}\n") == (
        f"{tmp_path}/config.yaml:3: inputs[1].block_ms = 0 is invalid; allowed: an integer "
        "5..1000")
    assert error(tmp_path, "inputs:\n  - mic\n  - 'mic:'\n").startswith(
        f"{tmp_path}/config.yaml:3: inputs[1] = 'mic:' is invalid; allowed: mic | mic:DEVICE")


def test_inputs_named_derived_unique_and_relative_to_the_file(tmp_path: Path):
    p = write(tmp_path, "input:\n  realtime: false\ninputs:\n  - kitchen=mic:USB\n"
                        "  - calls/7.wav\n  - {source: other/7.wav, block_ms: 20}\n  - '-'\n")
    cfg = load_config(p)
    assert [(i.name, i.kind, i.realtime, i.block_ms) for i in cfg.inputs] == [
        ("kitchen", "mic", False, 30), ("7", "file", False, 30), ("7-2", "file", False, 20),
        ("stdin", "stdin", False, 30)]
    assert cfg.inputs[1].source == str(tmp_path / "calls/7.wav")
    # The command line replaces the file's inputs; paths stay relative to the cwd.
    cli = load_config(p, {"inputs": ["a.wav", "line7=b.wav"]})
    assert [(i.name, i.source) for i in cli.inputs] == [("a", "a.wav"), ("line7", "b.wav")]
    # One unnamed input: output.stream_name (older configs) still names it.
    assert load_config(None, {"output.stream_name": "desk"}).inputs[0].name == "desk"
    assert load_config(None).inputs[0].name == "mic"
    assert Config().inputs == (InputConfig(name="mic"),)


def test_windows_spec_and_targets():
    cfg = load_config(None, {"windows.window_s": 1.5, "windows.hop_s": 0.25,
                             "output.targets": ["stdout", "unix:/run/i.sock", "tcp:[::1]:80"],
                             "output.unix_mode": "600"})
    assert cfg.windows.spec(8000) == WindowSpec(1.5, 0.25, 8000)
    assert cfg.windows.spec() == WindowSpec(1.5, 0.25, 16000)
    assert cfg.output.parsed_targets == (
        OutputTarget("stdout"), OutputTarget("unix", path="/run/i.sock"),
        OutputTarget("tcp", host="::1", port=80),
    )
    assert [str(t) for t in cfg.output.parsed_targets] == list(cfg.output.targets)
    assert cfg.output.unix_mode_int == 0o600
    assert parse_target("tcp:localhost:65535") == OutputTarget("tcp", host="localhost", port=65535)


def test_bad_value_message_names_file_line_key_value_and_allowed(tmp_path: Path):
    msg = error(tmp_path, "input:\n  source: mic\nvad:\n  aggressiveness: 2\n  frame_ms: 25\n")
    assert msg == (f"{tmp_path}/config.yaml:5: vad.frame_ms = 25 is invalid; "
                   "allowed: 10, 20, 30")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vad:\n  aggressiveness: 4\n", "vad.aggressiveness = 4 is invalid; allowed: 0, 1, 2, 3"),
        ("vad:\n  trigger_ratio: 0\n", "vad.trigger_ratio = 0.0 is invalid; allowed: a number > 0"),
        ("model:\n  threads: two\n", "model.threads = 'two' is invalid; allowed: an integer 1..2"),
        ("model:\n  threads: true\n", "model.threads = True is invalid"),
        ("model:\n  threads: 1.5\n", "model.threads = 1.5 is invalid"),
        ("model:\n  verdict: vote\n", "allowed: utterance, mean, max"),
        ("input:\n  format: alaw\n", "input.format = 'alaw' is invalid; allowed: s16le, mulaw"),
        ("input:\n  realtime: maybe\n", "input.realtime = 'maybe' is invalid; allowed: true or"),
        ("input:\n  source: 'mic:'\n", "input.source = 'mic:' is invalid"),
        ("output:\n  unix_mode: 0660\n", 'output.unix_mode = 432 is invalid; allowed: an octal'),
        ("output:\n  unix_mode: '0999'\n", "output.unix_mode = '0999' is invalid"),
        ("output:\n  targets: [stdout, 'tcp:host:x']\n", "output.targets = 'tcp:host:x' is inv"),
        ("output:\n  targets: ['tcp:host:70000']\n", "allowed: tcp:HOST:PORT with PORT 0-65535"),
        ("output:\n  targets: ['udp::80']\n", "unknown output 'udp::80'; use stdout | unix:PATH"),
        ("output:\n  targets: [stdout, 'stdout']\n", "output 'stdout' is listed twice"),
        ("inputs: [a=mic, a=mic:2]\n", "stream name 'a' is given to more than one input"),
        ("inputs: [-, stdin]\n", "allowed: at most one stdin input"),
        ("inputs:\n  - {name: 'bad name', source: mic}\n",
         "inputs[0].name = 'bad name' is invalid; allowed: stream name 'bad name' is invalid"),
        ("inputs:\n  - {source: mic, rate: 8000}\n", "unknown key inputs[0].rate; did you mean "
                                                      "inputs[0].rate_hz?"),
        ("inputs:\n  - {name: x}\n", "allowed: a mapping with a source key"),
        ("inputs:\n  - {source: a.wav, realtime: 3}\n", "inputs[0].realtime = 3 is invalid"),
        ("inputs: []\n", "inputs = [] is invalid; allowed: a list of inputs"),
        ("output:\n  targets: ['unix:']\n", "output.targets = 'unix:' is invalid"),
        ("output:\n  targets: [udp:1.2.3.4:5]\n", "output.targets = 'udp:1.2.3.4:5' is invalid"),
        ("output:\n  targets: []\n", "output.targets = () is invalid; allowed: a non-empty list"),
        ("log_level: LOUD\n", "log_level = 'LOUD' is invalid; allowed: DEBUG, INFO"),
        ("windows:\n  window_s: 1.0\n  hop_s: 1.5\n", "windows.hop_s = 1.5 is invalid; allowed"),
        ("vad:\n  trigger_window_ms: 20\n", "vad.trigger_window_ms = 20 is invalid; allowed: >= v"),
        ("vad:\n  max_utterance_s: 0.5\n", "vad.max_utterance_s = 0.5 is invalid"),
        ("vad:\n  noise_gate_db: 41\n", "vad.noise_gate_db = 41.0 is invalid; allowed: a number"),
        ("vad:\n  noise_gate_db: -1\n", "allowed: a number >= 0 and <= 40"),
        ("vad:\n  max_pause_ms: 30\n",
         "vad.max_pause_ms = 30 is invalid; allowed: 0 (pauses kept whole) or >= 2 * "
         "vad.frame_ms (60)"),
        ("vad:\n  max_pause_ms: -5\n", "vad.max_pause_ms = -5 is invalid"),
        ("vad:\n  min_pause_ms: -1\n", "vad.min_pause_ms = -1 is invalid"),
        ("vad:\n  min_pause_ms: soon\n", "vad.min_pause_ms = 'soon' is invalid"),
        ("vad: 3\n", "vad = 3 is invalid; allowed: a mapping of vad.* keys"),
        ("segmentation:\n  mode: smart\n",
         "segmentation.mode = 'smart' is invalid; allowed: model, silence"),
        ("segmentation:\n  early_after_ms: 200\n",
         "segmentation.early_after_ms = 200 is invalid; allowed: 0 (no early answers) or "
         "from vad.min_pause_ms (300) to below vad.min_silence_ms (1300)"),
        ("vad:\n  min_silence_ms: 400\n",
         "segmentation.early_after_ms = 400 is invalid; allowed: 0 (no early answers) or "
         "from vad.min_pause_ms (300) to below vad.min_silence_ms (400)"),
        ("vad:\n  min_pause_ms: 1300\n",
         "vad.min_pause_ms = 1300 is invalid; allowed: from vad.frame_ms (30) to below "
         "vad.min_silence_ms (1300) when segmentation.mode is model"),
        ("segmentation:\n  split_score: 1.5\n", "segmentation.split_score = 1.5 is invalid"),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, expected: str):
    msg = error(tmp_path, text)
    assert msg.startswith(f"{tmp_path}/config.yaml:")
    assert expected in msg


def test_unknown_keys_suggest_closest(tmp_path: Path):
    assert error(tmp_path, "vad:\n  min_silence: 900\n") == (
        f"{tmp_path}/config.yaml:2: unknown key vad.min_silence; did you mean vad.min_silence_ms?"
    )
    assert "did you mean model.threshold?" in error(tmp_path, "threshold: 0.3\n")
    assert "(a single input goes under input:)" in error(tmp_path, "inputs:\n  source: mic\n")
    assert "did you mean input?" in error(tmp_path, "inptu:\n  source: mic\n")
    assert "known keys: input.source" in error(tmp_path, "zzzzzz: 1\n")


def test_yaml_syntax_error_has_line_number(tmp_path: Path):
    msg = error(tmp_path, "vad:\n  frame_ms: 30\n  bad: [1, 2\nmodel:\n  threads: 1\n")
    assert msg.startswith(f"{tmp_path}/config.yaml:")
    assert "YAML syntax error" in msg
    line = int(msg.split(":")[1])
    assert 3 <= line <= 4
    msg = error(tmp_path, "vad:\n  frame_ms: 30\n frame: 1\n")
    assert msg.startswith(f"{tmp_path}/config.yaml:3: YAML syntax error")


def test_duplicate_key_and_non_mapping(tmp_path: Path):
    assert error(tmp_path, "vad:\n  frame_ms: 30\n  frame_ms: 20\n") == (
        f"{tmp_path}/config.yaml:3: duplicate key vad.frame_ms (first set on line 2)"
    )
    assert "top level must be a mapping" in error(tmp_path, "- a\n- b\n")


def test_missing_file_and_bad_overrides(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"^command line: unknown key model\.pth; did you mean"):
        load_config(None, {"model.pth": "x"})
    with pytest.raises(ConfigError, match=r"^command line: model\.threshold = 'high' is invalid"):
        load_config(None, {"model.threshold": "high"})
    with pytest.raises(ConfigError, match=r"^command line: vad\.frame_ms = 25 is invalid"):
        load_config(write(tmp_path, "vad:\n  frame_ms: 30\n"), {"vad.frame_ms": 25})
