"""intentd-eval: SNR scaling, stream building, metrics, and one small end-to-end run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from intentd.daemon.audio.sources import MULAW_TO_INT16
from intentd.daemon.score import Span
from intentd.trainer.evaluation import metrics as M
from intentd.trainer.evaluation.channel import mulaw_encode_g711, to_phone
from intentd.trainer.evaluation.cli import main, parse_conditions
from intentd.trainer.evaluation.snr import mix_max_energy, noise_gain
from intentd.trainer.evaluation.streams import (
    StreamOptions,
    Utterance,
    build_stream,
    pause_point,
    with_pause,
)
from intentd.trainer.synthesis.signals import frame_energies, max_frame_energy


def test_frame_energies_are_sums_over_20ms_frames() -> None:
    x = np.concatenate([np.full(320, 0.5), np.full(320, 0.25), np.full(10, 1.0)])
    assert frame_energies(x, 16000).tolist() == [80.0, 20.0, 10.0]
    assert max_frame_energy(x, 16000) == 80.0


@pytest.mark.parametrize("snr_db", [24.0, 12.0, 6.0, 0.0, -3.0])
def test_noise_is_scaled_by_max_frame_energy_ratio(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.5)).astype(np.float32)
    noise = rng.standard_normal(16000).astype(np.float32)
    mixed = mix_max_energy(speech, noise, snr_db)
    added = mixed.astype(np.float64) - speech
    got = 10 * np.log10(max_frame_energy(speech) / max_frame_energy(added))
    assert got == pytest.approx(snr_db, abs=1e-3)
    # The gain itself: E_s / (k^2 E_n) = 10^(snr/10) exactly.
    k = noise_gain(4.0, 1.0, 20.0)
    assert k == pytest.approx(0.2)


def test_noise_gain_of_silent_speech_or_noise_is_zero() -> None:
    assert noise_gain(0.0, 1.0, 10.0) == 0.0
    assert noise_gain(1.0, 0.0, 10.0) == 0.0


def _utts() -> list[Utterance]:
    return [Utterance(np.full(n, 0.5, np.float32), lab)
            for n, lab in ((8000, "a"), (12000, "b"), (16000, "c"))]


def test_stream_spans_cover_exactly_the_speech() -> None:
    st = build_stream(_utts(), random.Random(1), StreamOptions(pause_prob=0.0))
    assert [s.intent for s in st.spans] == ["a", "b", "c"]
    inside = np.zeros(st.audio.size, bool)
    for s, n in zip(st.spans, (8000, 12000, 16000), strict=True):
        a, b = round(s.start_s * 16000), round(s.end_s * 16000)
        assert b - a == n
        assert np.all(st.audio[a:b] == 0.5)
        inside[a:b] = True
    assert np.all(st.audio[~inside] == 0.0)
    gaps = [st.spans[0].start_s] + [n.start_s - p.end_s
                                    for p, n in zip(st.spans, st.spans[1:], strict=False)]
    gaps.append(st.audio.size / 16000 - st.spans[-1].end_s)
    assert all(1.5 <= g <= 3.0 for g in gaps)


def test_stream_pauses_stay_inside_the_truth_span() -> None:
    st = build_stream(_utts(), random.Random(2), StreamOptions(pause_prob=1.0))
    for s, n in zip(st.spans, (8000, 12000, 16000), strict=True):
        a, b = round(s.start_s * 16000), round(s.end_s * 16000)
        pause = (b - a) - n
        assert 0.3 * 16000 <= pause <= 1.2 * 16000
        seg = st.audio[a:b]
        assert seg[0] == 0.5 and seg[-1] == 0.5
        assert int(np.sum(seg == 0.0)) == pause


def test_pause_point_is_quietest_frame_of_the_middle_third() -> None:
    x = np.full(320 * 30, 0.5, np.float32)
    x[320 * 14: 320 * 15] = 0.01  # a quiet frame at 14 of 30 (middle third is 10..19)
    x[320 * 2: 320 * 3] = 0.0  # quieter, but outside the middle third
    assert pause_point(x) == 320 * 14 + 160


def test_pause_goes_into_the_quietest_point_of_the_words() -> None:
    """Silence around the words is ignored (training clips have it; tune-encoder pauses
    them too): the pause splits the audible part at its pause_point."""
    rng = np.random.default_rng(0)
    words = rng.normal(0, 0.2, 30 * 320).astype(np.float32)  # 30 frames of 20 ms
    words[14 * 320 : 15 * 320] *= 0.01  # frame 14: inside the middle third (10..19)
    audio = np.concatenate([np.zeros(16000, np.float32), words, np.zeros(16000, np.float32)])
    out = with_pause(audio, 4000)
    at = 16000 + 14 * 320 + 160
    assert out.size == audio.size + 4000
    np.testing.assert_array_equal(out[:at], audio[:at])
    assert not out[at : at + 4000].any()
    np.testing.assert_array_equal(out[at + 4000 :], audio[at:])


def test_g711_encoder_inverts_the_daemon_decoder() -> None:
    values = MULAW_TO_INT16.astype(np.float64) / 32767.0
    codes = mulaw_encode_g711(values)
    assert np.array_equal(MULAW_TO_INT16[codes], MULAW_TO_INT16)
    assert to_phone(np.zeros(16000, np.float32)).shape == (8000,)


def _ev(start: float, end: float, intent: str, score: float) -> dict[str, object]:
    return {"type": "intent", "intent": intent, "score": score, "start_s": start,
            "end_s": end, "latency_ms": 10.0, "top": [{"intent": intent, "score": score}]}


def test_metrics_apply_threshold_after_matching() -> None:
    spans = [Span(1.0, 2.0, "a"), Span(4.0, 5.0, "b"), Span(8.0, 9.0, "a")]
    events = [_ev(1.1, 2.1, "a", 0.9), _ev(4.0, 4.8, "b", 0.4), _ev(6.0, 6.5, "b", 0.7)]
    res = [M.StreamResult(spans, events)]
    m0 = M.utterance_metrics(res, ["a", "b"], 0.0)
    assert (m0["correct"], m0["missed"], m0["no_match"], m0["spurious_intents"]) == (2, 1, 0, 1)
    m5 = M.utterance_metrics(res, ["a", "b"], 0.5)
    assert (m5["correct"], m5["missed"], m5["no_match"], m5["spurious_intents"]) == (1, 1, 1, 1)
    assert m5["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    # a: tp 1, fn 1 -> 2/3; b: tp 0, fn 1 -> 0 -> macro 1/3
    assert m5["macro_f1"] == pytest.approx(1 / 3, abs=1e-4)
    seg = M.segmentation(res)
    assert (seg["recall"], seg["precision"]) == (pytest.approx(2 / 3, abs=1e-4),
                                                 pytest.approx(2 / 3, abs=1e-4))
    cm = M.confusion(res, ["a", "b"], 0.5)
    assert cm["counts"] == [[1, 0, 0, 1], [0, 0, 1, 0]]
    assert M.false_accepts(events, 0.5, 0.5) == {"events": 3, "false_accepts": 2,
                                                 "per_hour": 4.0}
    # The rejection class winning (no_match at threshold 0) is never an accept.
    rejected = {**_ev(7.0, 7.5, "_none", 0.95), "type": "no_match", "intent": None}
    assert M.false_accepts([*events, rejected], 0.5, 0.0)["false_accepts"] == 3


def test_command_metrics_one_to_one_boundaries_and_waits() -> None:
    """Span 1: one event (early, decided 0.4 s after the speech); span 2: cut in two;
    spans 3 and 4: one event over both; span 5: none."""
    spans = [Span(1.0, 2.0, "a"), Span(4.0, 6.0, "b"), Span(8.0, 9.0, "a"),
             Span(9.5, 10.0, "b"), Span(12.0, 13.0, "a")]
    events = [{**_ev(1.02, 2.03, "a", 0.9), "end": "early", "decided_s": 2.4},
              {**_ev(4.0, 4.9, "b", 0.9), "end": "early", "decided_s": 5.3},
              {**_ev(5.6, 6.0, "b", 0.9), "end": "silence", "decided_s": 7.3},
              {**_ev(8.0, 10.0, "a", 0.9), "end": "split", "decided_s": 11.0}]
    c = M.commands([M.StreamResult(spans, events)])
    assert c == {"truth_spans": 5, "one_to_one": 0.2, "boundary_error_ms_p90": 29.0,
                 "stop_to_decision_ms_p50": 400.0, "stop_to_decision_ms_p95": 400.0,
                 "end": {"early": 2, "silence": 1, "split": 1}, "early_share": 0.5}
    # events without the keys (older models' reports) count as silence, decided at their end
    plain = M.commands([M.StreamResult(spans[:1], [_ev(1.0, 2.0, "a", 0.9)])])
    assert (plain["end"], plain["stop_to_decision_ms_p50"]) == ({"silence": 1}, 0.0)


def test_sweep_gives_accuracy_in_every_condition() -> None:
    """Each threshold row carries every condition's accuracy at that threshold: a right
    answer scoring 0.4 counts below 0.45 only."""
    spans = [Span(1.0, 2.0, "a"), Span(4.0, 5.0, "b")]
    quiet = [M.StreamResult(spans, [_ev(1.0, 2.0, "a", 0.9), _ev(4.0, 5.0, "b", 0.8)])]
    noisy = [M.StreamResult(spans, [_ev(1.0, 2.0, "a", 0.4), _ev(4.0, 5.0, "a", 0.7)])]
    rows = M.sweep(quiet, ["a", "b"], {}, thresholds=(0.0, 0.4, 0.45, 0.85),
                   conditions={"clean": quiet, "6": noisy})
    assert [r["accuracy_by_condition"] for r in rows] == [
        {"clean": 1.0, "6": 0.5}, {"clean": 1.0, "6": 0.5}, {"clean": 1.0, "6": 0.0},
        {"clean": 0.5, "6": 0.0}]
    assert [r["accuracy"] for r in rows] == [1.0, 1.0, 1.0, 0.5]
    assert "accuracy_by_condition" not in M.sweep(quiet, ["a", "b"], {}, thresholds=(0.5,))[0]


def test_parse_conditions() -> None:
    assert parse_conditions("clean, 24,9.0,clean") == ("clean", "24", "9")


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["--data", "x.wav", "--out", str(tmp_path), "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("intentd-eval: error: ") and "--truth" in err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path), "--model", "m",
                 "--snrs", "loud"]) == 2
    assert "--snrs" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path), "--model", "m",
                 "--gap-s", "2", "1"]) == 2
    assert "--gap-s MIN MAX needs 0 <= MIN <= MAX, got 2 1" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path), "--model", "m",
                 "--layout", "back-to-back", "--pause-s", "0.9", "0.6"]) == 2
    assert "--pause-s MIN MAX needs 0 <= MIN <= MAX, got 0.9 0.6" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path),
                 "--model", str(tmp_path / "nomodel"), "--snrs", "clean"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_end_to_end_small_evaluation(compact_model: Path, synth_data: Path,
                                     tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code = main(["--model", str(compact_model), "--data", str(synth_data), "--out", str(out),
                 "--snrs", "clean,12", "--max-utterances", "10", "--per-stream", "5",
                 "--fa-hours", "0.034", "--seed", "3"])
    assert code == 0
    r = json.loads((out / "report.json").read_text())
    for key in ("settings", "utterance", "segmentation", "commands", "latency_ms",
                "confusion_matrix", "by_snr", "false_accepts", "threshold_sweep", "labels"):
        assert key in r
    assert r["settings"]["layout"] == "spread" and r["settings"]["pause_s"] == [0.3, 1.2]
    assert r["commands"]["truth_spans"] == 10 and "one_to_one" in r["by_snr"][0]
    assert [row["condition"] for row in r["by_snr"]] == ["clean", "12"]
    assert r["utterance"]["utterances"] == 10
    assert len(r["labels"]) == 3
    assert r["utterance"]["accuracy"] >= 0.6
    assert r["segmentation"]["recall"] >= 0.8
    assert set(r["false_accepts"]) == {"noise", "silence"}
    assert r["false_accepts"]["silence"]["hours"] == pytest.approx(0.034, abs=1e-3)
    assert [row["threshold"] for row in r["threshold_sweep"]] == list(M.THRESHOLDS)
    zero = r["threshold_sweep"][0]
    assert set(zero["accuracy_by_condition"]) == {"clean", "12"}
    assert zero["accuracy_by_condition"]["clean"] == zero["accuracy"]
    assert r["latency_ms"]["p50_ms"] is not None
    md = (out / "report.md").read_text()
    assert "## Accuracy by SNR" in md and "| clean |" in md and "| 12 |" in md
    assert "acc. 12" in md
    for png in ("accuracy_vs_snr.png", "threshold_sweep.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_telephone_evaluation_without_false_accept_streams(
        compact_model: Path, synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tel"
    assert main(["--model", str(compact_model), "--data", str(synth_data), "--out", str(out),
                 "--snrs", "clean", "--max-utterances", "5", "--fa-hours", "0",
                 "--telephone", "--per-stream", "1", "--gap-s", "0.3", "0.5"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["settings"]["telephone"] is True
    assert (r["settings"]["per_stream"], r["settings"]["gap_s"]) == (1, [0.3, 0.5])
    assert r["utterance"]["utterances"] == 5
    assert r["segmentation"]["recall"] >= 0.8
    assert r["false_accepts"] == {}
    assert "(not run: --fa-hours 0)" in (out / "report.md").read_text()
