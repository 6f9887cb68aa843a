"""One evaluation: every condition (clean / SNR) of every stream, plus the false-accept
streams, replayed through the daemon pipeline; returns the report dict."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from intentd.daemon.config import Config
from intentd.daemon.model.backend import ModelBackend
from intentd.trainer.evaluation import metrics as M
from intentd.trainer.evaluation.channel import PHONE_RATE_HZ, PhoneLine
from intentd.trainer.evaluation.conditions import CLEAN
from intentd.trainer.evaluation.replay import replay, sweep_config
from intentd.trainer.evaluation.snr import NoiseMaker, max_frame_energy, noise_floor, noise_gain
from intentd.trainer.evaluation.streams import SAMPLE_RATE_HZ, Stream

log = logging.getLogger(__name__)

FA_CHUNK_S = 30.0  # false-accept audio is generated this much at a time (bounded memory)


@dataclass(frozen=True)
class EvalSettings:
    conditions: tuple[str, ...] = (CLEAN, "24", "18", "12", "9", "6")
    noise_kind: str = "babble"
    noise_files: tuple[str, ...] = ()
    telephone: bool = False
    fa_hours: float = 1.0
    fa_snr_db: float = 12.0
    floor_dbfs: float = -60.0
    seed: int = 0
    add_floor: bool = True  # off for real recordings, which have their own background


class _Run:
    def __init__(self, cfg: Config, backend: ModelBackend, settings: EvalSettings,
                 noise_audio: Sequence[np.ndarray], bar: tqdm) -> None:
        self.cfg = sweep_config(cfg)
        self.backend = backend
        self.s = settings
        self.noise_audio = list(noise_audio)
        self.bar = bar

    def _progress(self, rate_hz: int) -> Callable[[int], None]:
        return lambda n: self.bar.update(n / rate_hz)

    def _play(self, chunks: Iterator[np.ndarray] | list[np.ndarray], name: str
              ) -> list[M.Event]:
        rate = PHONE_RATE_HZ if self.s.telephone else SAMPLE_RATE_HZ
        if self.s.telephone:
            chunks = _phone(chunks)
        return replay(self.cfg, self.backend, chunks, rate, name, self._progress(rate))

    def condition(self, streams: Sequence[Stream], cond: str, index: int) -> list[M.StreamResult]:
        out = []
        for si, st in enumerate(streams):
            rng = np.random.default_rng([self.s.seed, index, si])
            audio = st.audio.astype(np.float32, copy=True)
            if self.s.add_floor:
                audio += noise_floor(audio.size, rng, self.s.floor_dbfs)
            if cond != CLEAN:
                noise = NoiseMaker(self.s.noise_kind, self.noise_audio,
                                   seed=self.s.seed * 1000 + si).make(audio.size)
                k = noise_gain(max_frame_energy(st.audio), max_frame_energy(noise), float(cond))
                audio = (audio + k * noise).astype(np.float32)
            out.append(M.StreamResult(st.spans, self._play([audio], st.name)))
        return out

    def fa_stream(self, kind: str, speech_max_energy: float) -> tuple[list[M.Event], float]:
        """``fa_hours`` of noise-only (``kind="noise"``) or silence-only audio."""
        total = int(self.s.fa_hours * 3600 * SAMPLE_RATE_HZ)
        chunk = int(FA_CHUNK_S * SAMPLE_RATE_HZ)
        rng = np.random.default_rng([self.s.seed, 0xFA, kind == "noise"])
        maker = NoiseMaker(self.s.noise_kind, self.noise_audio, seed=self.s.seed + 7)
        gain: list[float] = []

        def chunks() -> Iterator[np.ndarray]:
            done = 0
            while done < total:
                n = min(chunk, total - done)
                x = noise_floor(n, rng, self.s.floor_dbfs)
                if kind == "noise":
                    noise = maker.make(n)
                    if not gain:  # one level for the whole stream, set by its first chunk
                        gain.append(noise_gain(speech_max_energy, max_frame_energy(noise),
                                               self.s.fa_snr_db))
                    x = (x + gain[0] * noise).astype(np.float32)
                done += n
                yield x

        return self._play(chunks(), f"fa-{kind}"), total / SAMPLE_RATE_HZ / 3600


def _phone(chunks: Iterator[np.ndarray] | list[np.ndarray]) -> Iterator[np.ndarray]:
    line = PhoneLine(SAMPLE_RATE_HZ)
    for c in chunks:
        yield line.process(c)
    yield line.process(np.zeros(0, np.float32), last=True)


def evaluate(cfg: Config, backend: ModelBackend, streams: Sequence[Stream],
             labels: Sequence[str], settings: EvalSettings,
             noise_audio: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    t0 = time.monotonic()
    speech_s = sum(s.seconds for s in streams)
    total_s = speech_s * len(settings.conditions) + 2 * settings.fa_hours * 3600
    threshold = cfg.model.threshold
    with tqdm(total=round(total_s, 1), unit="s", desc="intentd-eval", leave=False, mininterval=1.0,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]"
              ) as bar:
        run = _Run(cfg, backend, settings, noise_audio, bar)
        by_cond = {c: run.condition(streams, c, i) for i, c in enumerate(settings.conditions)}
        ref = float(np.median([max_frame_energy(s.audio) for s in streams]))
        fa = {}
        if settings.fa_hours > 0:
            fa = {k: run.fa_stream(k, ref) for k in ("noise", "silence")}
    head = by_cond.get(CLEAN) or by_cond[settings.conditions[0]]
    by_snr = []
    for c, res in by_cond.items():
        row = {"condition": c, **M.utterance_metrics(res, labels, threshold)}
        seg = M.segmentation(res)
        row["segmentation_recall"], row["segmentation_precision"] = seg["recall"], seg["precision"]
        row["one_to_one"] = M.commands(res)["one_to_one"]
        by_snr.append(row)
    wall = time.monotonic() - t0
    audio_s = bar.total
    return {
        "settings": {**asdict(settings), "operating_threshold": threshold,
                     "vad": asdict(cfg.vad), "windows": asdict(cfg.windows),
                     "verdict": cfg.model.verdict, "block_ms": cfg.input.block_ms,
                     "segmentation": asdict(cfg.segmentation),
                     "snr_definition": "10*log10(max 20 ms frame energy of speech / of noise)",
                     "headline_condition": CLEAN if CLEAN in by_cond else settings.conditions[0]},
        "model": backend.name,
        "labels": list(labels),
        "streams": {"count": len(streams), "utterances": sum(len(s.spans) for s in streams),
                    "seconds": round(speech_s, 1)},
        "utterance": M.utterance_metrics(head, labels, threshold),
        "segmentation": M.segmentation(head),
        "commands": M.commands(head),
        "latency_ms": M.latency(head),
        "confusion_matrix": M.confusion(head, labels, threshold),
        "by_snr": by_snr,
        "false_accepts": {k: {"hours": round(h, 4), **M.false_accepts(ev, h, threshold)}
                          for k, (ev, h) in fa.items()},
        "threshold_sweep": M.sweep(head, labels, fa, conditions=by_cond),
        "timing": {"wall_s": round(wall, 1), "audio_s": round(audio_s, 1),
                   "x_realtime": round(audio_s / wall, 1) if wall > 0 else None},
    }
