"""Training data sources for ``intentd-train fit``: one list of examples per split.

Three kinds of SRC are accepted:

* an audiofolder directory (what ``intentd-train synth`` writes): ``SRC/train`` and
  ``SRC/test``, each with ``metadata.csv`` (``file_name,label,...``). A directory with only
  ``train/`` is split 80/20 (seeded, per label). Synth's optional ``SRC/noisy`` (the test
  utterances with noise) is loaded as ``DataSet.noisy`` and evaluated next to the test split;
* a CSV manifest with ``path,label`` columns and an optional ``split`` column
  (``train``/``test``); relative paths are relative to the CSV; without ``split`` the rows
  are split 80/20 (seeded, per label);
* a Hugging Face Hub dataset id such as ``PolyAI/minds14`` (``--data-config en-US``,
  ``--audio-column audio``, ``--label-column intent_class``), split 80/20 as in the HF
  audio-classification guide when it has no test split.

Everything a user can get wrong raises :class:`intentd.daemon.errors.DataError` with one line naming
the file (and CSV line) and the fix. Audio is decoded with soundfile and resampled with
:func:`intentd.daemon.audio.windowing.preprocess`, exactly as the daemon does.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from intentd.daemon.audio.windowing import preprocess
from intentd.daemon.errors import DataError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Example:
    """One labelled utterance: encoded audio on disk (``path``) or in memory (``data``)."""

    uid: str
    label: str
    where: str  # names the audio in error messages: "CSV:LINE: FILE" or "DATASET[split][i]"
    path: Path | None = None
    data: bytes | None = None
    voice: str = ""
    # The slot values the utterance carries (synth's ``slots`` column): name -> value.
    slots: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DataSet:
    train: list[Example]
    test: list[Example]
    labels: tuple[str, ...]  # class order: id i <-> labels[i]
    description: str
    # Synth's noisy/ split: the test utterances through the training augmentation.
    noisy: tuple[Example, ...] = ()


def load_data(
    src: str,
    *,
    config: str | None = None,
    audio_column: str = "audio",
    label_column: str = "label",
    test_fraction: float = 0.2,
    seed: int = 42,
    trust_remote_code: bool = False,
) -> DataSet:
    """Load and validate SRC (see the module docstring)."""
    p = Path(src)
    if p.is_dir():
        train, test, labels = _load_audiofolder(p, test_fraction, seed)
    elif p.is_file():
        train, test, labels = _load_manifest(p, test_fraction, seed)
    elif not p.exists() and _HUB_ID.match(src) and not src.startswith((".", "/")):
        train, test, labels = _load_hub(
            src, config, audio_column, label_column, test_fraction, seed, trust_remote_code
        )
    else:
        raise DataError(
            f"{src}: no such file or directory; pass an audiofolder dir, a CSV manifest "
            "(path,label[,split]) or a Hugging Face dataset id like PolyAI/minds14"
        )
    data = _validated(src, train, test, labels)
    noisy_csv = p / "noisy" / "metadata.csv"
    if p.is_dir() and noisy_csv.is_file():
        noisy = _read_metadata(noisy_csv, "noisy")
        known = set(data.labels)
        for e in noisy:
            if e.label not in known:
                raise DataError(f"{e.where}: label {e.label!r} is not among the trained "
                                f"labels {list(data.labels)}")
            _check_header(e)
        data = dataclasses.replace(data, noisy=tuple(noisy))
    return data


def _validated(
    src: str, train: list[Example], test: list[Example], labels: list[str] | None
) -> DataSet:
    if not train and not test:
        raise DataError(f"{src}: the data set is empty; add labelled audio files")
    if not train:
        raise DataError(f"{src}: the train split is empty; add training examples")
    if not test:
        raise DataError(f"{src}: the test split is empty; add test examples")
    train_labels = {e.label for e in train}
    for e in test:
        if e.label not in train_labels:
            raise DataError(
                f"{e.where}: test label {e.label!r} has no training examples; add some to "
                "the train split or drop it from the test split"
            )
    for e in (*train, *test):
        _check_header(e)
    order = list(labels) if labels else sorted(train_labels)
    for lab in order:
        if lab not in train_labels:
            raise DataError(f"{src}: class {lab!r} has no training examples; add some")
    unknown = sorted(train_labels - set(order))
    if unknown:
        raise DataError(f"{src}: labels {unknown} are not among the declared labels {order}")
    return DataSet(train=train, test=test, labels=tuple(order), description=str(src))


# --- audiofolder -------------------------------------------------------------------------


def _load_audiofolder(
    root: Path, test_fraction: float, seed: int
) -> tuple[list[Example], list[Example], list[str] | None]:
    train_dir, test_dir = root / "train", root / "test"
    if not (train_dir / "metadata.csv").is_file():
        raise DataError(
            f"{train_dir / 'metadata.csv'}: not found; an audiofolder needs "
            "train/metadata.csv (file_name,label,...) as written by 'intentd-train synth'"
        )
    train = _read_metadata(train_dir / "metadata.csv", "train")
    if (test_dir / "metadata.csv").is_file():
        test = _read_metadata(test_dir / "metadata.csv", "test")
    else:
        log.info("%s has no test/ split: holding out %.0f%% of train", root, 100 * test_fraction)
        train, test = split_examples(train, test_fraction, seed)
    return train, test, _spec_labels(root / "spec.json")


def _read_metadata(csv_path: Path, split: str) -> list[Example]:
    rows = _read_csv(csv_path, required=("file_name", "label"))
    out = []
    for line, row in rows:
        audio = _audio_path(csv_path, line, row["file_name"])
        label = _label(csv_path, line, row["label"])
        out.append(
            Example(
                uid=f"{split}/{row['file_name']}",
                label=label,
                where=f"{csv_path}:{line}: {audio}",
                path=audio,
                voice=(row.get("voice") or "").strip(),
                slots=_slots(csv_path, line, row.get("slots") or ""),
            )
        )
    return out


def _slots(csv_path: Path, line: int, text: str) -> tuple[tuple[str, str], ...]:
    """The ``slots`` column: a JSON object of slot name -> value (empty: none)."""
    if not text.strip():
        return ()
    try:
        value = json.loads(text)
    except ValueError as err:
        raise DataError(f"{csv_path}:{line}: slots {text!r} is not JSON ({err.args[0]}); "
                        'write an object such as {"room": "kitchen"}') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in value.items()):
        raise DataError(f"{csv_path}:{line}: slots {text!r} must be a JSON object of "
                        'strings, such as {"room": "kitchen"}')
    return tuple(sorted(value.items()))


def _spec_labels(spec_path: Path) -> list[str] | None:
    """Label order declared by synth's spec.json, so class ids follow the spec."""
    if not spec_path.is_file():
        return None
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{spec_path}: not valid JSON ({err}); re-run synth") from err
    for key in ("labels", "intents"):
        val = spec.get(key) if isinstance(spec, dict) else None
        if isinstance(val, list) and val:
            return [v if isinstance(v, str) else str(v.get("name", v)) for v in val]
        if isinstance(val, dict) and val:
            return [str(k) for k in val]
    return None


# --- CSV manifest ------------------------------------------------------------------------


def _load_manifest(
    csv_path: Path, test_fraction: float, seed: int
) -> tuple[list[Example], list[Example], None]:
    rows = _read_csv(csv_path, required=("path", "label"))
    has_split = bool(rows) and "split" in rows[0][1]
    train: list[Example] = []
    test: list[Example] = []
    for line, row in rows:
        audio = _audio_path(csv_path, line, row["path"])
        ex = Example(
            uid=f"{row['path']}#{line}",
            label=_label(csv_path, line, row["label"]),
            where=f"{csv_path}:{line}: {audio}",
            path=audio,
            voice=(row.get("voice") or "").strip(),
        )
        split = (row.get("split") or "").strip().lower() if has_split else "train"
        if split == "train":
            train.append(ex)
        elif split in ("test", "eval", "validation"):
            test.append(ex)
        else:
            raise DataError(
                f"{csv_path}:{line}: split {split!r} is not 'train' or 'test'; fix the "
                "split column"
            )
    if not has_split:
        train, test = split_examples(train, test_fraction, seed)
    return train, test, None


def _read_csv(csv_path: Path, required: Iterable[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{csv_path}: cannot read CSV ({err}); save it as UTF-8 text") from err
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{csv_path}:1: missing column(s) {', '.join(missing)}; the header has "
            f"{', '.join(header) or 'nothing'} and needs {', '.join(required)}"
        )
    rows = []
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        rows.append((reader.line_num, {k: (v or "") for k, v in row.items() if k}))
    return rows


def _audio_path(csv_path: Path, line: int, name: str) -> Path:
    name = name.strip()
    if not name:
        raise DataError(f"{csv_path}:{line}: empty audio file name; fill it in")
    p = Path(name)
    if not p.is_absolute():
        p = csv_path.parent / p
    if not p.is_file():
        raise DataError(
            f"{csv_path}:{line}: audio file {p} not found; fix the path or drop the row"
        )
    return p


def _label(csv_path: Path, line: int, label: str) -> str:
    label = label.strip()
    if not label:
        raise DataError(f"{csv_path}:{line}: empty label; fill it in or drop the row")
    return label


# --- Hugging Face Hub --------------------------------------------------------------------


def _load_hub(
    dataset_id: str,
    config: str | None,
    audio_column: str,
    label_column: str,
    test_fraction: float,
    seed: int,
    trust_remote_code: bool,
) -> tuple[list[Example], list[Example], list[str] | None]:
    import datasets

    try:
        kwargs = {"trust_remote_code": True} if trust_remote_code else {}
        dsd = datasets.load_dataset(dataset_id, name=config, **kwargs)
    except Exception as err:  # the hub client raises many unrelated types
        raise DataError(
            f"{dataset_id}: cannot load Hugging Face dataset (config {config!r}): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    splits = list(dsd.keys())
    train_name = "train" if "train" in dsd else splits[0]
    first = dsd[train_name]
    for col in (audio_column, label_column):
        if col not in first.column_names:
            raise DataError(
                f"{dataset_id}: no column {col!r}; columns are {', '.join(first.column_names)}"
                " (set --audio-column / --label-column)"
            )
    test_name = next((s for s in ("test", "validation") if s in dsd and s != train_name), None)
    label_feature = first.features[label_column]
    if test_name is None:
        # As the HF guide does with MInDS-14: hold out a seeded 20% of the train split.
        stratify = label_column if isinstance(label_feature, datasets.ClassLabel) else None
        parts = first.train_test_split(
            test_size=test_fraction, seed=seed, stratify_by_column=stratify
        )
        pairs = [("train", parts["train"]), ("test", parts["test"])]
    else:
        pairs = [("train", first), ("test", dsd[test_name])]
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    out: dict[str, list[Example]] = {}
    for split, ds in pairs:
        # decode=False: we decode with soundfile ourselves, identically to files on disk.
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
        exs = []
        for i, row in enumerate(ds):
            audio = row[audio_column] or {}
            raw = row[label_column]
            label = names[raw] if names is not None else str(raw)
            where = f"{dataset_id}[{split}][{i}] ({audio.get('path') or 'in-memory audio'})"
            path = Path(audio["path"]) if audio.get("path") and not audio.get("bytes") else None
            if audio.get("bytes") is None and (path is None or not path.is_file()):
                raise DataError(f"{where}: audio is neither embedded nor a readable file")
            exs.append(
                Example(uid=f"{split}/{i}", label=label, where=where, path=path,
                        data=audio.get("bytes"))
            )
        out[split] = exs
    return out["train"], out["test"], names


# --- splitting and decoding --------------------------------------------------------------


def split_examples(
    examples: list[Example], test_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Seeded per-label split; every label keeps at least one training example."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    train: list[Example] = []
    test: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_test = min(len(group) - 1, round(len(group) * test_fraction))
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return train, test


def _undecodable(ex: Example, err: Exception) -> DataError:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return DataError(f"{ex.where}: cannot decode audio ({msg}); re-export it as 16-bit PCM WAV")


def _check_header(ex: Example) -> None:
    """Cheap up-front check (header only) so a corrupt file fails before any training."""
    if ex.path is None:
        return
    try:
        info = sf.info(str(ex.path))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as err:
        raise _undecodable(ex, err) from err
    if info.frames == 0:
        raise DataError(f"{ex.where}: audio has no samples; re-record it or drop it")


def load_audio(ex: Example, target_rate_hz: int) -> np.ndarray:
    """Decode ``ex`` to mono float32 at ``target_rate_hz``; DataError names the file."""
    source: Path | io.BytesIO = ex.path if ex.data is None else io.BytesIO(ex.data)
    try:
        audio, rate = sf.read(source, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as err:
        raise _undecodable(ex, err) from err
    if audio.size == 0:
        raise DataError(f"{ex.where}: audio has no samples; re-record it or drop it")
    if not np.all(np.isfinite(audio)):
        raise DataError(f"{ex.where}: audio contains NaN/inf samples; re-export it")
    return preprocess(audio, int(rate), target_rate_hz)
