"""The shipped systemd unit passes ``systemd-analyze verify`` (Debian's systemd), with its
programs pointed at this checkout's, and declares what the daemon implements."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "intentd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (apt-get install systemd)")
def test_unit_verifies(tmp_path: Path) -> None:
    intentd = Path(sys.executable).with_name("intentd")
    assert intentd.is_file()
    text = UNIT.read_text().replace("/opt/intentd/.venv/bin/intentd", str(intentd))
    unit = tmp_path / "intentd.service"
    unit.write_text(text)
    sock = tmp_path / "intentd.socket"
    sock.write_text((REPO / "systemd" / "intentd.socket").read_text())
    p = subprocess.run(["systemd-analyze", "verify", str(sock), str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def test_unit_declares_notify_reload_and_checks() -> None:
    keys = [line.split("=", 1) for line in UNIT.read_text().splitlines()
            if "=" in line and not line.startswith("#")]
    pairs = [(k, v) for k, v in keys]
    assert ("Type", "notify") in pairs and ("NotifyAccess", "main") in pairs
    assert any(k == "WatchdogSec" for k, _ in pairs)
    reload = [v for k, v in pairs if k == "ExecReload"]
    assert reload[0].endswith("--check-config --config /etc/intentd/config.yaml")
    assert reload[1] == "/bin/kill -HUP $MAINPID"


def test_socket_activation_uses_the_socket_systemd_passes(compact_model: Path,
                                                         synth_data: Path,
                                                         tmp_path: Path) -> None:
    """As systemd does for intentd.socket: the listening socket is descriptor 3, LISTEN_FDS=1
    and LISTEN_PID the daemon's pid; a client connected before the daemon started gets the
    events, and the socket file stays (systemd owns it)."""
    import json
    import os
    import socket

    import numpy as np
    import soundfile as sf

    path = tmp_path / "events.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))  # before the daemon exists
    speech, rate = sf.read(sorted((synth_data / "test").glob("*.wav"))[0], dtype="float32")
    wav = tmp_path / "a.wav"
    sf.write(wav, np.concatenate([np.zeros(8000, np.float32), speech,
                                  np.zeros(32000, np.float32)]), rate)
    fd = listener.fileno()
    env = {**os.environ, "LISTEN_FDS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # In the child only: the socket moves to descriptor 3, LISTEN_PID becomes its pid.
    move = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "
    cmd = (f'{move}export LISTEN_PID=$$; exec "{sys.executable}" -m intentd.daemon --model '
           f'"{compact_model}" --input "{wav}" --no-realtime --threshold 0 '
           f'--output "unix:{path}"')
    p = subprocess.run(["bash", "-c", cmd], env=env, pass_fds=(fd,), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "from systemd socket activation" in p.stderr
    client.settimeout(10)
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    events = [json.loads(line) for line in data.decode().splitlines()]
    assert [e["type"] for e in events] == ["intent"]
    assert path.exists()  # systemd's socket: the daemon leaves it
