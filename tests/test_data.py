"""intentd.trainer.fitting.data (sources, splits, validation, decoding, embedding cache),
intentd.trainer.metrics and the scoring helpers of intentd.trainer.fitting.report. Fast: no
training, tiny generated audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiofolder import write_split

from intentd.daemon.audio.windowing import WindowSpec
from intentd.daemon.errors import DataError
from intentd.trainer.fitting import data, features
from intentd.trainer.fitting.report import confusion_matrix, score_windows, write_report
from intentd.trainer.metrics import classification_scores, load_metric

RATE = 16000


def _tone(path: Path, freq: float, seconds: float = 1.0, rate: int = RATE) -> None:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate,
             subtype="PCM_16")


def _audiofolder(root: Path, per_label: dict[str, dict[str, int]]) -> Path:
    """``per_label[split][label] = n`` tone files with metadata.csv in each split dir."""
    freqs = {"low": 300.0, "mid": 900.0, "high": 2500.0, "other": 5000.0}
    t = np.arange(RATE) / RATE
    for split, counts in per_label.items():
        write_split(root, split, (
            (f"{label}_{i}.wav", label, f"v{i}",
             (0.3 * np.sin(2 * np.pi * (freqs[label] + 10 * i) * t)).astype(np.float32))
            for label, n in counts.items() for i in range(n)))
    return root


# --- metrics -----------------------------------------------------------------------------


def test_accuracy_metric_exact() -> None:
    acc = load_metric("accuracy")
    assert acc.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2]) == {"accuracy": 0.75}
    assert acc.compute(predictions=[1, 1, 1], references=[0, 0, 0]) == {"accuracy": 0.0}


def test_macro_f1_metric_exact() -> None:
    f1 = load_metric("macro_f1")
    # class 0: F1 1; class 1: tp1 fp1 -> 2/3; class 2: tp1 fn1 -> 2/3
    out = f1.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], num_labels=3)
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3, abs=1e-12)
    # a class never predicted but present in the references scores 0
    out = f1.compute(predictions=[0, 0], references=[0, 1], num_labels=2)
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2, abs=1e-12)
    # class 2 absent from both is left out of the mean
    out = f1.compute(predictions=[0, 1], references=[0, 1], num_labels=3)
    assert out["macro_f1"] == 1.0


def test_metrics_load_from_package_files_not_hub() -> None:
    assert load_metric("accuracy").name == "accuracy"
    with pytest.raises(KeyError):
        load_metric("bleu")
    assert classification_scores([0, 1], [0, 0], 2) == {"accuracy": 0.5,
                                                        "macro_f1": pytest.approx(1 / 3)}


def test_confusion_matrix_rows_are_truth() -> None:
    assert confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3) == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_score_windows_averages_window_probabilities() -> None:
    # utterance 0 has windows [strong 1, weak 0, weak 0] -> mean prob favours 1
    logits = np.log(np.array([[0.05, 0.95], [0.6, 0.4], [0.6, 0.4], [0.9, 0.1]]))
    scores = score_windows(logits, np.array([0, 0, 0, 1]), np.array([1, 0]), 2)
    assert scores["utterance_predictions"] == [1, 0]
    assert scores["utterance_accuracy"] == 1.0
    assert scores["window_accuracy"] == 0.5  # windows 1 and 2 say 0 but truth is 1


def test_write_report_json_and_png(tmp_path: Path) -> None:
    report = {"utterance_accuracy": 0.5, "labels": ["a", "b"],
              "confusion_matrix": [[1, 0], [1, 0]]}
    write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


# --- sources -----------------------------------------------------------------------------


def test_audiofolder_with_spec_label_order(tmp_path: Path) -> None:
    root = _audiofolder(tmp_path / "d", {"train": {"low": 3, "high": 2},
                                         "test": {"low": 1, "high": 1}})
    (root / "spec.json").write_text(json.dumps({"labels": ["low", "high"]}))
    ds = data.load_data(str(root))
    assert ds.labels == ("low", "high")
    assert (len(ds.train), len(ds.test)) == (5, 2)
    assert {e.voice for e in ds.train} == {"v0", "v1", "v2"}
    assert ds.train[0].where == f"{root / 'train' / 'metadata.csv'}:2: {root / 'train/low_0.wav'}"


def test_audiofolder_noisy_split_is_loaded_and_checked(tmp_path: Path) -> None:
    root = _audiofolder(tmp_path / "d", {"train": {"low": 2, "high": 2},
                                         "test": {"low": 1, "high": 1},
                                         "noisy": {"low": 1, "high": 1}})
    ds = data.load_data(str(root))
    assert [e.uid for e in ds.noisy] == ["noisy/low_0.wav", "noisy/high_0.wav"]
    assert data.load_data(str(_audiofolder(tmp_path / "plain", {
        "train": {"low": 2}, "test": {"low": 1}}))).noisy == ()
    bad = _audiofolder(tmp_path / "bad", {"train": {"low": 2}, "test": {"low": 1},
                                          "noisy": {"mid": 1}})
    with pytest.raises(DataError, match=r"noisy/metadata.csv:2: .*label 'mid' is not among"):
        data.load_data(str(bad))


def test_audiofolder_train_only_is_split_80_20_per_label(tmp_path: Path) -> None:
    root = _audiofolder(tmp_path / "d", {"train": {"low": 10, "high": 5}})
    a = data.load_data(str(root), seed=1)
    b = data.load_data(str(root), seed=1)
    assert ds_uids(a.test) == ds_uids(b.test)
    assert sorted(e.label for e in a.test) == ["high", "low", "low"]
    assert len(a.train) == 12
    assert a.labels == ("high", "low")  # no spec.json: sorted


def ds_uids(examples: list[data.Example]) -> list[str]:
    return [e.uid for e in examples]


def test_csv_manifest_with_and_without_split(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(5):
        _tone(audio / f"a{i}.wav", 300)
        _tone(audio / f"b{i}.wav", 2000)
    rows = [(f"audio/a{i}.wav", "a", "test" if i == 0 else "train") for i in range(5)]
    rows += [(f"audio/b{i}.wav", "b", "test" if i == 0 else "train") for i in range(5)]
    m = tmp_path / "m.csv"
    m.write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))
    ds = data.load_data(str(m))
    assert (len(ds.train), len(ds.test)) == (8, 2)
    assert ds.test[0].path == audio / "a0.wav"
    m2 = tmp_path / "m2.csv"
    m2.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab, _ in rows))
    ds2 = data.load_data(str(m2))
    assert (len(ds2.train), len(ds2.test)) == (8, 2)
    assert sorted(e.label for e in ds2.test) == ["a", "b"]


# --- validation --------------------------------------------------------------------------


def _manifest(tmp_path: Path, body: str) -> Path:
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        if not (tmp_path / name).exists():
            _tone(tmp_path / name, 440)
    m = tmp_path / "m.csv"
    m.write_text(body)
    return m


def test_missing_audio_file_names_file_and_line(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "path,label\na.wav,x\nnope.wav,y\n")
    with pytest.raises(DataError, match=rf"^{m}:3: audio file {tmp_path / 'nope.wav'} not found"):
        data.load_data(str(m))


def test_corrupt_audio_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    m = _manifest(tmp_path, "path,label,split\na.wav,x,train\nb.wav,y,train\nbad.wav,x,test\n")
    with pytest.raises(DataError, match=rf"^{m}:4: {tmp_path / 'bad.wav'}: cannot decode audio"):
        data.load_data(str(m))


def test_truncated_audio_fails_at_decode(tmp_path: Path) -> None:
    ex = data.Example(uid="u", label="x", where="W", data=b"not audio at all")
    with pytest.raises(DataError, match=r"^W: cannot decode audio"):
        data.load_audio(ex, RATE)


def test_test_label_not_in_train(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "path,label,split\na.wav,x,train\nb.wav,y,train\nc.wav,z,test\n")
    with pytest.raises(DataError, match=rf"^{m}:4: .*test label 'z' has no training examples"):
        data.load_data(str(m))


def test_empty_dataset_and_empty_split(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "path,label\n")
    with pytest.raises(DataError, match="the data set is empty"):
        data.load_data(str(m))
    m = _manifest(tmp_path, "path,label,split\na.wav,x,train\nb.wav,y,train\n")
    with pytest.raises(DataError, match="the test split is empty"):
        data.load_data(str(m))


def test_missing_columns(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "file,intent\na.wav,x\n")
    with pytest.raises(DataError, match=rf"^{m}:1: missing column\(s\) path, label"):
        data.load_data(str(m))


def test_declared_class_without_training_examples(tmp_path: Path) -> None:
    root = _audiofolder(tmp_path / "d", {"train": {"low": 2}, "test": {"low": 1}})
    (root / "spec.json").write_text(json.dumps({"labels": ["low", "high"]}))
    with pytest.raises(DataError, match="class 'high' has no training examples"):
        data.load_data(str(root))


def test_missing_source() -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        data.load_data("/nonexistent/dir")


# --- decoding and embedding cache --------------------------------------------------------


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    stereo = np.zeros((8000, 2), dtype=np.float32)
    stereo[:, 0] = 0.5
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="PCM_16")
    ex = data.Example(uid="u", label="x", where="w", path=tmp_path / "s.wav")
    audio = data.load_audio(ex, RATE)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    assert float(np.median(audio)) == pytest.approx(0.25, abs=1e-3)


def test_embed_examples_caches_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from intentd.daemon.model import embedding

    _tone(tmp_path / "a.wav", 440, seconds=1.5)
    _tone(tmp_path / "b.wav", 880, seconds=0.5)
    exs = [data.Example(uid=n, label="x", where=n, path=tmp_path / n) for n in ("a.wav", "b.wav")]
    spec = WindowSpec(1.0, 0.5)
    utt, win = features.embed_examples(exs, spec, tmp_path / "cache", workers=2)
    assert [u.shape for u in utt] == [(embedding.n_embeddings(24000), 96), (1, 96)]
    assert win is not None and [len(w) for w in win] == [2, 1]
    assert win[0][0].shape == (embedding.n_embeddings(16000), 96)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache miss")

    monkeypatch.setattr(embedding, "embed_many", boom)
    utt2, win2 = features.embed_examples(exs, spec, tmp_path / "cache", workers=1)
    assert all(np.array_equal(a, b) for a, b in zip(utt, utt2, strict=True))
    assert win2 is not None and np.array_equal(win[0], win2[0])


def test_hub_dataset_split_80_20_with_class_names(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub path, offline: load_dataset is replaced by an in-memory MInDS-14 look-alike."""
    import datasets

    paths = []
    for i in range(10):
        _tone(tmp_path / f"c{i}.wav", 300 + 100 * i, rate=8000)
        paths.append(str(tmp_path / f"c{i}.wav"))
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=8000),
                                  "intent_class": datasets.ClassLabel(names=["abroad", "pay"])})
    ds = datasets.Dataset.from_dict(
        {"audio": paths, "intent_class": [i % 2 for i in range(10)]}, features=features)
    seen: dict[str, object] = {}

    def fake_load(dataset_id: str, name: str | None = None, **kw: object) -> object:
        seen.update(id=dataset_id, name=name)
        return datasets.DatasetDict({"train": ds})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got = data.load_data("PolyAI/minds14", config="en-US", label_column="intent_class")
    assert seen == {"id": "PolyAI/minds14", "name": "en-US"}
    assert got.labels == ("abroad", "pay")
    assert (len(got.train), len(got.test)) == (8, 2)
    assert sorted(e.label for e in got.test) == ["abroad", "pay"]  # stratified
    audio = data.load_audio(got.test[0], RATE)
    assert audio.shape == (16000,)  # 1 s at 8 kHz, resampled to 16 kHz
    with pytest.raises(DataError, match=r"no column 'label'; columns are audio, intent_class"):
        data.load_data("PolyAI/minds14", config="en-US")
