"""Front-end cost: the daemon's streaming embedder against offline ``embed()``, same run.

The daemon computes the compact model's embeddings while the person speaks, in capture-sized
blocks. This measures what that costs relative to embedding the same audio in one call
(the baseline, measured in the same process, interleaved, median of repeats), and both
relative to real time. It also times the shipped embedding model run window by window
(what the front-end did before it ran the CNN over whole sequences), against the same
baseline.

Usage: python bench/bench_frontend.py [--seconds 30] [--block-ms 30] [--repeats 5]
                                      [--batch-embeddings 12]
Prints one JSON object. Targets (ratios, not absolute times):
  streaming / offline ≤ 1.5, offline real-time factor ≤ 0.01 (one core).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from intentd.daemon.model import embedding
from intentd.daemon.model.embedding import SAMPLE_RATE_HZ, StreamingEmbedder, embed
from intentd.daemon.model.loader import STREAM_BATCH_EMBEDDINGS


def _offline(audio: np.ndarray) -> float:
    t0 = time.process_time()
    embed(audio, threads=1)
    return time.process_time() - t0


def _windowed(audio: np.ndarray) -> float:
    t0 = time.process_time()
    mel = embedding.melspectrogram(audio, threads=1)
    count = embedding.n_window_embeddings(mel.shape[0])
    starts = np.arange(count) * embedding.HOP_FRAMES
    embedding.embed_windows(mel[starts[:, None] + np.arange(embedding.WINDOW_FRAMES)], 1)
    return time.process_time() - t0


def _streaming(audio: np.ndarray, block: int, batch: int) -> float:
    t0 = time.process_time()
    s = StreamingEmbedder(threads=1, batch_embeddings=batch)
    for i in range(0, audio.size, block):
        s.push(audio[i : i + block])
    s.finish()
    return time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--block-ms", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-embeddings", type=int, default=STREAM_BATCH_EMBEDDINGS,
                    help="streaming batch (default: the daemon's)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = int(args.seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    # Speech-like enough for cost purposes: harmonics with a moving pitch plus noise.
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    audio = (0.1 * np.sin(2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ)
             + 0.01 * rng.standard_normal(n)).astype(np.float32)
    block = int(args.block_ms * SAMPLE_RATE_HZ / 1000)
    _offline(audio[: SAMPLE_RATE_HZ * 2])  # warm-up: ONNX session creation
    offline, streaming, windowed = [], [], []
    for _ in range(args.repeats):
        offline.append(_offline(audio))
        streaming.append(_streaming(audio, block, args.batch_embeddings))
        windowed.append(_windowed(audio))
    ratios = [s / o for s, o in zip(streaming, offline, strict=True)]
    win_ratios = [w / o for w, o in zip(windowed, offline, strict=True)]
    off_med, str_med = statistics.median(offline), statistics.median(streaming)
    print(json.dumps({
        "audio_s": args.seconds,
        "block_ms": args.block_ms,
        "batch_embeddings": args.batch_embeddings,
        "offline_cpu_ms_per_audio_s": round(1000 * off_med / args.seconds, 2),
        "streaming_cpu_ms_per_audio_s": round(1000 * str_med / args.seconds, 2),
        "streaming_over_offline_median": round(statistics.median(ratios), 3),
        "streaming_over_offline_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "window_by_window_over_offline_median": round(statistics.median(win_ratios), 3),
        "offline_real_time_factor": round(off_med / args.seconds, 4),
        "streaming_real_time_factor": round(str_med / args.seconds, 4),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
