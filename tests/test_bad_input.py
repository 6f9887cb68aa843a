"""Bad input, as a table: every case runs ``intentd`` as a subprocess and must give the exact
exit code and one stderr line that names the problem and the fix, never a traceback. Audio
that is odd but usable (stereo 48 kHz, 8 kHz, 24-bit, float, NaN, clipped, silence, empty
stdin) must work. The config rows are generated from the rules table: a wrong type and an
out-of-range value for every key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from intentd.daemon.config_rules import RULES

REPO = Path(__file__).resolve().parents[1]
SR = 16000


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    says: str = ""  # in the last stderr line (the error), or anywhere in stderr for code 0
    stdin: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)


def _run(case: Case) -> tuple[Case, subprocess.CompletedProcess[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           **case.env}
    p = subprocess.run([sys.executable, "-m", "intentd.daemon", *case.args], env=env,
                       input=case.stdin if case.stdin is not None else b"",
                       capture_output=True, timeout=300)
    return case, p


def _check(results: list[tuple[Case, subprocess.CompletedProcess[bytes]]]) -> None:
    failures = []
    for case, p in results:
        err = p.stderr.decode(errors="replace")
        lines = [line for line in err.splitlines() if line.strip()]
        problems = []
        if p.returncode != case.code:
            problems.append(f"exit {p.returncode}, expected {case.code}")
        if "Traceback" in err:
            problems.append("a traceback")
        if case.code == 2:
            if not lines or not lines[-1].startswith("intentd: error: "):
                problems.append("no one-line error at the end")
            elif case.says not in lines[-1]:
                problems.append(f"{case.says!r} not in {lines[-1]!r}")
        elif case.says and case.says not in err:
            problems.append(f"{case.says!r} not in stderr")
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)}\n    {err[-600:]}")
    assert not failures, f"{len(failures)} of {len(results)} cases:\n" + "\n".join(failures)


def _config_cases(tmp: Path) -> list[Case]:
    wrong_type = {str: "[1, 2]", int: '"many"', float: '"lots"', bool: '"perhaps"', tuple: "5",
                  list: "5"}
    cases = []
    for key, (typ, check, _allowed) in RULES.items():
        section, _, name = key.rpartition(".")
        values = [("type", wrong_type[typ])]
        for probe in (-(10**9), 10**12):  # out of range, where the rule has a range
            if typ in (int, float) and not check(probe):
                values.append((f"range {probe}", str(probe)))
                break
        for what, value in values:
            cfg = tmp / f"{key}-{what.split()[0]}.yaml"
            if section:
                cfg.write_text(f"# a comment line\n{section}:\n  {name}: {value}\n")
            else:
                cfg.write_text(f"# a comment line\n\n{name}: {value}\n")
            cases.append(Case(f"config {key} {what}", ["--config", str(cfg), "--check-config"],
                              2, f"{cfg}:3: {key}"))
    extra = {
        "unknown key": ("model:\n  threshhold: 0.5\n", "did you mean model.threshold?"),
        "unknown section": ("modle:\n  threshold: 0.5\n", "did you mean model?"),
        "YAML syntax": ("model:\n  threshold: [0.5\n", "bad.yaml:"),
        "not a mapping": ("- just\n- a list\n", "bad.yaml"),
        "bad output scheme": ("output:\n  targets: [amqp://x]\n", "output.targets"),
        "output listed twice": ("output:\n  targets: [stdout, stdout]\n", "listed twice"),
        "empty inputs list": ("inputs: []\n", "inputs"),
        "world-writable socket": ('output:\n  unix_mode: "0666"\n', "not writable by others"),
        "hook without a program": ("hooks:\n  lights_on: []\n", "bad.yaml:2: hooks.lights_on"),
        "hooks not a mapping": ("hooks: [lights_on]\n", "bad.yaml:1: hooks"),
        "MQTT URL with a path": ("output:\n  targets: ['mqtt://broker/x']\n", "takes no path"),
    }
    for name, (text, says) in extra.items():
        cfg = tmp / name.replace(" ", "_") / "bad.yaml"
        cfg.parent.mkdir()
        cfg.write_text(text)
        cases.append(Case(f"config {name}", ["--config", str(cfg), "--check-config"], 2, says))
    cases.append(Case("missing config file", ["--config", str(tmp / "none.yaml")], 2,
                      "none.yaml"))
    return cases


def _wav(path: Path, audio: np.ndarray, rate: int = SR, subtype: str = "PCM_16") -> str:
    sf.write(path, audio, rate, subtype=subtype)
    return str(path)


def _audio_cases(tmp: Path, model: Path, speech: np.ndarray) -> list[Case]:
    run = ["--model", str(model), "--no-realtime", "--input"]
    tone = (0.3 * np.sin(np.arange(SR) / 3.0)).astype(np.float32)
    good = _wav(tmp / "good.wav", speech)
    raw = good.replace(".wav", ".raw")
    Path(raw).write_bytes(Path(good).read_bytes()[44:])
    (tmp / "dir.wav").mkdir()
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "text.wav").write_text("this is not audio\n" * 50)
    whole = Path(good).read_bytes()
    (tmp / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp / "header_only.wav").write_bytes(whole[:44])
    (tmp / "garbage.wav").write_bytes(whole[:12] + os.urandom(4000))
    (tmp / "fake.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + os.urandom(2000))
    nan = speech.copy()
    nan[100] = np.nan
    nan[SR] = np.inf
    stereo48 = np.stack([speech, speech], axis=1)
    stereo48 = np.repeat(stereo48, 3, axis=0)
    return [
        Case("missing file", [*run, str(tmp / "none.wav")], 2, "not found"),
        Case("a directory", [*run, str(tmp / "dir.wav")], 2, "dir.wav"),
        Case("empty file", [*run, str(tmp / "empty.wav")], 2, "empty.wav"),
        Case("text renamed to .wav", [*run, str(tmp / "text.wav")], 2, "text.wav"),
        Case("RIFF header, garbage after", [*run, str(tmp / "garbage.wav")], 2, "garbage.wav"),
        Case("m4a it cannot decode", [*run, str(tmp / "fake.m4a")], 2, "fake.m4a"),
        Case("truncated WAV reads what is there", [*run, str(tmp / "truncated.wav")], 0),
        Case("header-only WAV", [*run, str(tmp / "header_only.wav")], 0),
        Case("stereo 48 kHz", [*run, _wav(tmp / "s48.wav", stereo48, 48000)], 0),
        Case("8 kHz", [*run, _wav(tmp / "8k.wav", speech[::2], 8000)], 0),
        Case("24-bit", [*run, _wav(tmp / "24.wav", speech, SR, "PCM_24")], 0),
        Case("float WAV", [*run, _wav(tmp / "f.wav", speech, SR, "FLOAT")], 0),
        Case("NaN and inf samples", [*run, _wav(tmp / "nan.wav", nan, SR, "FLOAT")], 0,
             "NaN or infinite samples"),
        Case("clipped audio", [*run, _wav(tmp / "clip.wav", np.clip(speech * 20, -1, 1))], 0),
        Case("ten minutes of silence", [*run, _wav(tmp / "silence.wav",
                                                   np.zeros(SR * 600, np.float32))], 0),
        Case("zero-length stdin", [*run, "-"], 0, stdin=b""),
        Case("odd-length stdin", [*run, "-"], 0, stdin=Path(raw).read_bytes()[:-1]),
        Case("stdin as u-law at 8 kHz", [*run, "-", "--input-rate", "8000", "--input-format",
                                        "mulaw"], 0, stdin=Path(raw).read_bytes()),
        Case("wrong --input-format", [*run, "-", "--input-format", "flac"], 2, "--input-format"),
        Case("--input-rate 0", [*run, "-", "--input-rate", "0"], 2, "rate_hz"),
        Case("bad --input form", [*run, "mic:"], 2, "mic:"),
        Case("two inputs named alike", [*run, f"a={good}", "--input", f"a={good}"], 2,
             "more than one input"),
        Case("a tone", [*run, _wav(tmp / "tone.wav", tone)], 0),
    ]


def _model_cases(tmp: Path, model: Path, wav: str) -> list[Case]:
    def copy(name: str, drop: str | None = None, edit: dict[str, bytes] | None = None) -> str:
        d = tmp / name
        d.mkdir()
        for f in model.iterdir():
            if f.is_file() and f.name != drop:
                (d / f.name).write_bytes((edit or {}).get(f.name, f.read_bytes()))
        return str(d)

    run = ["--no-realtime", "--input", wav, "--model"]
    (tmp / "a_file").write_text("x")
    return [
        Case("model dir missing", [*run, str(tmp / "nomodel")], 2, "does not exist"),
        Case("model path is a file", [*run, str(tmp / "a_file")], 2, "not a directory"),
        Case("no config.json", [*run, copy("m1", drop="config.json")], 2, "config.json"),
        Case("corrupt config.json", [*run, copy("m2", edit={"config.json": b"{nope"})], 2,
             "config.json"),
        Case("no weights", [*run, copy("m3", drop="model.safetensors")], 2, "m3"),
        Case("truncated weights", [*run, copy("m4", edit={
            "model.safetensors": (model / "model.safetensors").read_bytes()[:1000]})], 2, "m4"),
        # A compact model's feature extractor follows from its config: not needed.
        Case("compact model without preprocessor_config.json",
             [*run, copy("m5", drop="preprocessor_config.json")], 0),
    ]


def _closed_stdout(case: Case) -> tuple[Case, subprocess.CompletedProcess[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # The shell's >&- starts the daemon without a descriptor 1.
    cmd = " ".join(f"'{a}'" for a in [sys.executable, "-m", "intentd.daemon", *case.args])
    p = subprocess.run(["bash", "-c", f"exec {cmd} >&-"], env=env, capture_output=False,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=300)
    return case, subprocess.CompletedProcess(p.args, p.returncode, b"", p.stderr)


def _output_cases(tmp: Path, model: Path, wav: str) -> list[Case]:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    _output_cases.busy = busy  # type: ignore[attr-defined]  # held until the cases ran
    run = ["--model", str(model), "--no-realtime", "--input", wav, "--output"]
    return [
        Case("socket in a missing dir", [*run, f"unix:{tmp}/no/such/dir.sock"], 2,
             "does not exist"),
        Case("TCP port in use", [*run, f"tcp:127.0.0.1:{port}"], 2, str(port)),
        Case("unknown output scheme", [*run, "amqp://broker"], 2, "amqp://broker"),
        Case("MQTT option unknown", [*run, "mqtt://broker?qos=1"], 2, "unknown mqtt option"),
        Case("exec program missing", [*run, "exec:/no/such/program"], 2,
             "'/no/such/program' is not found"),
        Case("TCP port out of range", [*run, "tcp:127.0.0.1:70000"], 2, "70000"),
    ]


@pytest.mark.slow
def test_bad_input_table(compact_model: Path, synth_data: Path, tmp_path: Path) -> None:
    speech_file = sorted((synth_data / "test").glob("*.wav"))[0]
    audio, rate = sf.read(speech_file, dtype="float32")
    assert rate == SR
    speech = np.concatenate([np.zeros(SR // 2, np.float32), audio,
                             np.zeros(SR * 2, np.float32)])
    good = _wav(tmp_path / "speech.wav", speech)
    cases = (_config_cases(tmp_path)
             + _audio_cases(tmp_path, compact_model, speech)
             + _model_cases(tmp_path, compact_model, good)
             + _output_cases(tmp_path, compact_model, good))
    assert len(cases) >= 50
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(_run, cases))
    run = ["--model", str(compact_model), "--no-realtime", "--input", good]
    results.append(_closed_stdout(Case("stdout closed, stdout the output", run, 2,
                                       "stdout is closed")))
    results.append(_closed_stdout(Case("stdout closed, events to a socket",
                                       [*run, "--output", f"unix:{tmp_path}/ev.sock"], 0)))
    _check(results)
