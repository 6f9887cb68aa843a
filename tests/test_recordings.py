"""Debug recordings: each utterance's audio (as the model heard it) with its event beside it,
capped by count and bytes (oldest removed first); an unwritable directory is one error."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_engine import SR, FedSource, cfg_for, make, speech_then_silence, wait_until

from intentd.daemon.errors import ConfigError
from intentd.daemon.output.events import IntentEvent, LabelScore
from intentd.daemon.output.recordings import UtteranceRecorder


def test_each_utterance_is_saved_with_its_event(tmp_path: Path) -> None:
    rec_dir = tmp_path / "rec"
    live = FedSource("hall")
    sup, sink = make(cfg_for("hall", **{"output.save_utterances_dir": str(rec_dir),
                                        "output.save_utterances_max_files": 2}),
                     {"hall": live})
    runner = threading.Thread(target=sup.run)
    runner.start()
    wait_until(lambda: sup.ready.is_set())
    for _ in range(3):
        live.feed(speech_then_silence(1.0, 2.0, lead_s=0.5))
    wait_until(lambda: len(sink.verdicts("hall")) == 3)
    live.close()
    runner.join(timeout=10)
    wavs = sorted(rec_dir.glob("*.wav"))
    assert [w.name.split("_", 1)[1] for w in wavs] == ["hall_000001.wav", "hall_000002.wav"]
    for wav in wavs:
        event = json.loads(wav.with_suffix(".json").read_text())
        audio, rate = sf.read(wav)
        assert rate == SR and event["type"] == "intent"
        # the utterance as the model heard it: its voiced part with the VAD's padding
        assert abs(audio.size / SR - (event["end_s"] - event["start_s"])) < 0.7
        assert event["utterance_id"] == int(wav.stem[-6:])
    assert sup.recorder is not None and sup.recorder.stats() == {"saved": 3, "dropped": 0,
                                                                 "failed": 0}


def test_recordings_are_capped_by_bytes(tmp_path: Path) -> None:
    rec = UtteranceRecorder(tmp_path, max_files=100, max_bytes=100_000, sample_rate_hz=SR)
    rec.start()
    for i in range(5):
        ev = IntentEvent("intent", "on", 0.9, (LabelScore("on", 0.9),), i, "s", 0.0, 1.0, 0,
                         1.0, 1_700_000_000.0 + i, "m")
        rec.submit(ev, np.zeros(SR, np.float32))  # 32 kB of PCM each
    rec.close()
    kept = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert len(kept) == 3 and kept[-1].endswith("_s_000004.wav")
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 100_000


def test_an_unwritable_recordings_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"save_utterances_dir: cannot write to .*file"):
        UtteranceRecorder(blocker / "rec", 10, 10**6, SR).start()
