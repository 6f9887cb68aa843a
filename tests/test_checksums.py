"""Front-end weight checksums: recorded by fit, verified by the daemon's loader."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intentd.daemon.errors import DataError
from intentd.daemon.model import checksums, frontend_whisper
from intentd.daemon.model.loader import load_backend


@pytest.fixture
def model_copy(compact_model: Any, tmp_path: Path) -> Path:
    """The fixture model copied elsewhere, as a user copies a model to another machine."""
    return Path(shutil.copytree(compact_model, tmp_path / "copied"))


@pytest.fixture
def whisper_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the stock Whisper weights, used through INTENTD_WHISPER_DIR."""
    d = Path(shutil.copytree(frontend_whisper.model_dir(), tmp_path / "whisper"))
    monkeypatch.setenv("INTENTD_WHISPER_DIR", str(d))
    frontend_whisper.model_dir.cache_clear()
    yield d
    frontend_whisper.model_dir.cache_clear()


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _config(model: Path) -> dict[str, Any]:
    return json.loads((model / "config.json").read_text())


def test_fit_records_the_front_end_weights_and_a_copied_model_loads(model_copy: Path) -> None:
    recorded = _config(model_copy)[checksums.CONFIG_KEY]
    assert sorted(recorded) == ["config.json", "model.bin"]
    assert recorded == checksums.record("whisper_tiny_en")
    assert load_backend(model_copy).labels  # verified and loaded


def test_tampered_stock_weights_are_refused_naming_the_file(
        model_copy: Path, whisper_dir_env: Path) -> None:
    assert load_backend(model_copy).labels  # an identical copy is fine
    _flip_a_byte(whisper_dir_env / "model.bin")
    with pytest.raises(DataError) as err:
        load_backend(model_copy)
    msg = str(err.value)
    assert msg.startswith(f"{whisper_dir_env / 'model.bin'}: sha256 ")
    assert "not the weights it was trained on" in msg and "\n" not in msg


def test_missing_weights_and_a_bad_record_are_one_line_errors(
        model_copy: Path, whisper_dir_env: Path) -> None:
    (whisper_dir_env / "config.json").unlink()
    with pytest.raises(DataError, match=r"config\.json: missing \(installed\)"):
        load_backend(model_copy)
    cfg = _config(model_copy)
    cfg[checksums.CONFIG_KEY] = "abc"
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="frontend_sha256 must map weight files"):
        load_backend(model_copy)


def test_weights_inside_the_model_dir_are_verified(model_copy: Path) -> None:
    # A model carrying its own encoder (as tune-encoder writes it): stock weights, here.
    own = Path(shutil.copytree(frontend_whisper.model_dir(), model_copy / "whisper"))
    cfg = _config(model_copy)
    cfg["frontend_weights"] = "whisper"
    cfg[checksums.CONFIG_KEY] = checksums.record("whisper_tiny_en", own)
    (model_copy / "config.json").write_text(json.dumps(cfg))
    assert load_backend(model_copy).labels
    _flip_a_byte(own / "model.bin")
    with pytest.raises(DataError, match=r"whisper/model\.bin: sha256 .*copy the whole model"):
        load_backend(model_copy)


def test_a_model_without_a_record_loads_with_a_warning(
        model_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _config(model_copy)
    del cfg[checksums.CONFIG_KEY]
    (model_copy / "config.json").write_text(json.dumps(cfg))
    caplog.set_level(logging.WARNING)
    assert load_backend(model_copy).labels
    assert "records no checksums of its front-end weights" in caplog.text
