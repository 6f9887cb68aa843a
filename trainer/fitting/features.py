"""Model inputs for training: windows of audio, or cached speech embeddings of utterances.

Window-view models (wav2vec2, ...) train on :func:`intentd.daemon.audio.windowing.cut_windows` of
each utterance; the compact model trains on the embedding sequence of the whole utterance, which
is computed once per audio content and front-end version and cached on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentd.daemon.audio.windowing import WindowSpec
from intentd.daemon.model import frontends
from intentd.daemon.model.slots import SlotSpace
from intentd.trainer.fitting import slots
from intentd.trainer.fitting.data import Example, load_audio


def content_hash(ex: Example) -> str:
    """SHA-256 of the encoded audio: a cache key that survives renames and moves."""
    h = hashlib.sha256()
    if ex.data is not None:
        h.update(ex.data)
    else:
        assert ex.path is not None
        with open(ex.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# --- cached speech embeddings (compact model) -----------------------------------------------


def embed_examples(
    examples: list[Example], spec: WindowSpec | None, cache_dir: Path, workers: int = 2,
    chunk: int = 16, frontend: str = frontends.SPEECH_EMBEDDING,
) -> tuple[list[np.ndarray], list[list[np.ndarray]] | None]:
    """Utterance embeddings ``[T, dim]`` per example (and, with ``spec``, those of each
    window), from ``frontend`` (:mod:`intentd.daemon.model.frontends`).

    Computed once per audio content and front-end version, then read from ``cache_dir``, so
    re-runs and ``--resume`` skip the front-end. Chunks of utterances are embedded in
    ``workers`` threads (ONNX Runtime releases the GIL), each batching its chunk's windows.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from intentd.daemon.audio.windowing import cut_windows

    vdir = cache_dir / f"embed-{frontends.version(frontend)}"
    vdir.mkdir(parents=True, exist_ok=True)
    wtag = f"-w{spec.window_s:g}-{spec.hop_s:g}" if spec else ""

    def run(part: list[Example]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        done: list[tuple[np.ndarray, np.ndarray | None] | None] = []
        todo: list[tuple[int, Path, Path | None, np.ndarray]] = []
        for i, ex in enumerate(part):
            key = content_hash(ex)
            upath = vdir / f"{key}.npy"
            wpath = vdir / f"{key}{wtag}.npy" if spec else None
            if upath.is_file() and (wpath is None or wpath.is_file()):
                done.append((np.load(upath), np.load(wpath) if wpath else None))
            else:
                done.append(None)
                todo.append((i, upath, wpath, load_audio(ex, frontends.SAMPLE_RATE_HZ)))
        if todo:
            utts = frontends.embed_many(frontend, [a for _, _, _, a in todo])
            for (i, upath, wpath, audio), u in zip(todo, utts, strict=True):
                w = None
                if wpath is not None and spec is not None:
                    w = np.stack(frontends.embed_many(frontend, list(cut_windows(audio, spec))))
                    _save(wpath, w)
                _save(upath, u)
                done[i] = (u, w)
        return [d for d in done if d is not None]

    parts = [examples[i : i + chunk] for i in range(0, len(examples), chunk)]
    results: list[tuple[np.ndarray, np.ndarray | None]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
        total=len(examples), desc="embeddings", unit="utt"
    ) as bar:
        try:
            for res in pool.map(run, parts):
                results.extend(res)
                bar.update(len(res))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    utt = [u for u, _ in results]
    if spec is None:
        return utt, None
    return utt, [list(w) for _, w in results if w is not None]


def _save(path: Path, arr: np.ndarray) -> None:
    # Process and thread: the ranks of a distributed fit share the cache, and thread ids
    # repeat across processes.
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)  # readers never see a half-written cache file


@dataclass
class Prepared:
    train_ds: Any  # torch Dataset of {"x", "labels"}
    eval_ds: Any  # what compute_metrics sees: windows (window view) or utterances
    eval_utt: np.ndarray  # eval item -> test utterance index
    test_labels: np.ndarray  # test utterance -> class id
    window_ds: Any = None  # utterance view only: every test window's embeddings
    window_utt: np.ndarray | None = None
    pad: str = "audio"  # how the collator batches "x": raw audio or embeddings

    def collator(self, extractor: Any) -> Any:
        import torch

        def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
            xs = [it["x"] for it in items]
            if self.pad == "embeddings":
                batch = extractor.pad_embeddings(xs, return_tensors="pt")
            else:
                batch = extractor(xs, sampling_rate=extractor.sampling_rate,
                                  return_tensors="pt", padding=True)
            out = dict(batch)
            out["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
            if "slot_labels" in items[0]:
                out["slot_labels"] = torch.tensor(np.stack([it["slot_labels"] for it in items]),
                                                  dtype=torch.long)
            return out

        return collate


class Items:
    """Map-style dataset of ``(x, label[, slot classes])``; ``transform`` (augmentation) is
    for training."""

    def __init__(self, xs: list[np.ndarray], ys: list[int], transform: Any = None,
                 slots: np.ndarray | None = None) -> None:
        self.xs, self.ys, self.transform, self.slots = xs, ys, transform, slots

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def lengths(self) -> list[int]:
        """Sequence length of each item (before augmentation), for length-grouped batches."""
        return [len(x) for x in self.xs]

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.xs[i] if self.transform is None else self.transform(self.xs[i])
        if self.slots is None:
            return {"x": x, "labels": self.ys[i]}
        return {"x": x, "labels": self.ys[i], "slot_labels": self.slots[i]}


def _windows_of(examples: list[Any], spec: WindowSpec, desc: str
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Every window of every example (the daemon's cut) and each window's example index."""
    from tqdm.auto import tqdm

    from intentd.daemon.audio.windowing import cut_windows

    xs: list[np.ndarray] = []
    utt: list[int] = []
    for u, ex in enumerate(tqdm(examples, desc=desc, unit="utt")):
        windows = cut_windows(load_audio(ex, spec.sample_rate_hz), spec)
        xs.extend(windows)
        utt.extend([u] * len(windows))
    return xs, np.array(utt, dtype=np.int64)


def prepare_window_view(dataset: Any, labels: tuple[str, ...], spec: WindowSpec) -> Prepared:
    ids = {lab: i for i, lab in enumerate(labels)}
    train_labels = np.array([ids[ex.label] for ex in dataset.train], dtype=np.int64)
    test_labels = np.array([ids[ex.label] for ex in dataset.test], dtype=np.int64)
    train_xs, train_utt = _windows_of(dataset.train, spec, "windows (train)")
    test_xs, test_utt = _windows_of(dataset.test, spec, "windows (test)")
    return Prepared(
        train_ds=Items(train_xs, train_labels[train_utt].tolist()),
        eval_ds=Items(test_xs, test_labels[test_utt].tolist()),
        eval_utt=test_utt, test_labels=test_labels,
    )


def prepare_utterance_view(dataset: Any, labels: tuple[str, ...], spec: WindowSpec,
                            cache_dir: Path, threads: int, seed: int,
                            augment: bool, windows: bool = True,
                            frontend: str = frontends.SPEECH_EMBEDDING,
                            space: SlotSpace | None = None,
                            embed: Callable[..., Any] = embed_examples) -> Prepared:
    """Cached utterance embeddings; with ``windows``, also those of every test window;
    with ``space``, each utterance's slot classes. ``embed`` is :func:`embed_examples` or
    its stand-in for several processes (:func:`intentd.trainer.fitting.distributed.sharded`)."""
    ids = {lab: i for i, lab in enumerate(labels)}
    train_utt, _ = embed(dataset.train, None, cache_dir, threads, frontend=frontend)
    test_utt, test_win = embed(dataset.test, spec if windows else None, cache_dir,
                               threads, frontend=frontend)
    test_labels = np.array([ids[ex.label] for ex in dataset.test], dtype=np.int64)
    rng = np.random.default_rng(seed)
    prep = Prepared(
        train_ds=Items(train_utt, [ids[ex.label] for ex in dataset.train],
                        EmbeddingAugment(rng) if augment else None,
                        slots.targets(dataset.train, space) if space else None),
        eval_ds=Items(test_utt, test_labels.tolist(), None,
                      slots.targets(dataset.test, space) if space else None),
        eval_utt=np.arange(len(test_utt), dtype=np.int64), test_labels=test_labels,
        pad="embeddings",
    )
    if test_win is None:
        return prep
    win_xs = [w for per_utt in test_win for w in per_utt]
    win_utt = np.array([u for u, per_utt in enumerate(test_win) for _ in per_utt], np.int64)
    # Every item carries what the model's label_names name, or the Trainer counts the loss
    # among the predictions.
    win_slots = None if prep.eval_ds.slots is None else prep.eval_ds.slots[win_utt]
    return dataclasses.replace(prep, window_ds=Items(win_xs, test_labels[win_utt].tolist(),
                                                     None, win_slots),
                               window_utt=win_utt)


def prepare_extra_eval(examples: list[Any], labels: tuple[str, ...], spec: WindowSpec,
                       pad: str, cache_dir: Path, threads: int,
                       frontend: str = frontends.SPEECH_EMBEDDING,
                       space: SlotSpace | None = None,
                       embed: Callable[..., Any] = embed_examples
                       ) -> tuple[Items, np.ndarray, np.ndarray]:
    """(eval items, item -> utterance index, utterance labels) for an extra test split,
    in the same view as training (``pad``: "embeddings" = utterance view)."""
    ids = {lab: i for i, lab in enumerate(labels)}
    utt_labels = np.array([ids[ex.label] for ex in examples], dtype=np.int64)
    if pad == "embeddings":
        utts, _ = embed(examples, None, cache_dir, threads, frontend=frontend)
        return (Items(utts, utt_labels.tolist(), None,
                      slots.targets(examples, space) if space else None),
                np.arange(len(utts), dtype=np.int64), utt_labels)
    xs, index = _windows_of(examples, spec, "windows (extra test)")
    return Items(xs, utt_labels[index].tolist()), index, utt_labels


class EmbeddingAugment:
    """Random time crop and Gaussian noise on an embedding sequence ``[T, 96]``.

    The daemon's VAD cuts utterances with varying pre/post-roll and a live room adds noise;
    cropping up to 3% at each end and jittering the embeddings teaches the head the same
    invariances without re-running the front-end (the model adds its own span masks). The
    crop stays small because the deciding word often ends the phrase ("... in Greece"):
    cropping 15% cut it off, taught the head wrong labels and cost ~2 points on banking.
    """

    def __init__(self, rng: np.random.Generator, crop: float = 0.03, noise: float = 0.1) -> None:
        self.rng, self.crop, self.noise = rng, crop, noise

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[0]
        lo = int(self.rng.integers(0, int(t * self.crop) + 1))
        hi = t - int(self.rng.integers(0, int(t * self.crop) + 1))
        y = x[lo:hi] if hi - lo >= max(1, t // 2) else x
        scale = self.noise * float(y.std() or 1.0)
        return (y + self.rng.normal(0.0, scale, y.shape)).astype(np.float32)
