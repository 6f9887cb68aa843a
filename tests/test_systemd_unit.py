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
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
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
