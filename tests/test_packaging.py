"""Packaging: the folders daemon/ and trainer/ install as intentd.daemon and intentd.trainer,
so intentd installs beside python-daemon (import name ``daemon``) without touching it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from wheel_helpers import build_wheel

from intentd.daemon import __version__

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_installed_under_intentd() -> None:
    tool = _pyproject()["tool"]["setuptools"]
    mapping = tool["package-dir"]
    assert mapping == {"intentd.daemon": "daemon", "intentd.trainer": "trainer"}
    found = {"intentd." + ".".join(p.parent.relative_to(REPO).parts)
             for top in ("daemon", "trainer") for p in (REPO / top).rglob("__init__.py")}
    assert set(tool["packages"]) == found


def test_no_import_time_side_effects_in_the_packages() -> None:
    code = ("import sys, intentd.daemon, intentd.trainer; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_installs_beside_python_daemon(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"intentd"}, tops  # no top-level daemon/ or trainer/
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # python-daemon first, then intentd (without its heavy dependencies): nothing of
    # python-daemon may be replaced.
    subprocess.run([*pip, "python-daemon"], check=True, capture_output=True, timeout=600)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    code = ("import daemon, daemon.pidfile, importlib.metadata, intentd.daemon, "
            "intentd.trainer; assert hasattr(daemon, 'DaemonContext'); "
            "assert importlib.metadata.version('intentd') == intentd.daemon.__version__; "
            "print(intentd.daemon.__version__, daemon.__file__)")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    version, daemon_file = out.stdout.split()
    assert version == __version__
    assert "site-packages/daemon/" in daemon_file
