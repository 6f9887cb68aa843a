"""The daemon's numpy compact head gives torch's probabilities (within 1e-4) on both
front-ends and both head types, and loads with torch and transformers unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from signals import speechlike

from intentd.daemon.errors import DataError
from intentd.daemon.model import compact, frontends
from intentd.daemon.model.loader import load_backend

SR = 16000
LABELS = {0: "lights_on", 1: "lights_off", 2: "set_timer", 3: "_none"}
SLOTS = {"room": ["kitchen", "hall"], "minutes": ["5", "10", "20"]}
INTENT_SLOTS = {"lights_on": ["room"], "lights_off": ["room"], "set_timer": ["minutes"]}


def _save(out: Path, frontend: str, seed: int = 0, **kw: object) -> Path:
    """A compact model dir with every parameter drawn at random (LayerNorm gains and biases
    too, so no layer is an identity the numpy path could skip unnoticed)."""
    settings = {"hidden_size": 48, "gru_hidden_size": 24, "attention_hidden_size": 16, **kw}
    cfg = compact.CompactConfig(id2label=LABELS, embedding_dim=frontends.dim(frontend),
                                frontend=frontend, score_temperature=0.7, **settings)
    torch.manual_seed(seed)
    model = compact.CompactForAudioClassification(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(out)
    compact.CompactFeatureExtractor(feature_size=cfg.embedding_dim, frontend=frontend
                                    ).save_pretrained(out)
    return out


def _torch_probs(model_dir: Path, embeddings: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    compact.register()
    model = compact.CompactForAudioClassification.from_pretrained(model_dir).eval()
    t = max(e.shape[0] for e in embeddings)
    x = torch.zeros(len(embeddings), t, embeddings[0].shape[1])
    mask = torch.zeros(len(embeddings), t, dtype=torch.long)
    for i, e in enumerate(embeddings):
        x[i, : e.shape[0]] = torch.from_numpy(e)
        mask[i, : e.shape[0]] = 1
    with torch.inference_mode():
        out = model(input_values=x, attention_mask=mask)
    probs = torch.softmax(out.logits / model.config.score_temperature, dim=-1).numpy()
    slot_logits = getattr(out, "slot_logits", None)
    return probs, None if slot_logits is None else slot_logits.numpy()


VARIANTS = {
    "keyword_cnn+slots": {"slot_values": SLOTS, "intent_slots": INTENT_SLOTS,
                          "subtract_utterance_mean": True},
    "keyword_cnn stride 2": {"conv_stride": 2, "kernel_sizes": (3, 7)},
    "gru_attention+slots": {"head_type": "gru_attention", "num_conv_layers": 2,
                            "slot_values": SLOTS, "intent_slots": INTENT_SLOTS},
    "gru_attention, no gru": {"head_type": "gru_attention", "gru_hidden_size": 0,
                              "attention_heads": 1},
}


@pytest.mark.parametrize("frontend", frontends.FRONTENDS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_numpy_head_matches_torch(frontend: str, variant: str, tmp_path: Path) -> None:
    model_dir = _save(tmp_path / "m", frontend, **VARIANTS[variant])  # type: ignore[arg-type]
    backend = load_backend(model_dir)
    assert not hasattr(backend, "model")  # the daemon's backend holds no torch module
    # Utterances of different lengths in one padded batch, through the real front-end.
    audios = [speechlike(n, seed=i) for i, n in enumerate((SR // 5, SR, 3 * SR + 123))]
    embs = frontends.embed_many(frontend, audios)
    probs, slot_probs = backend.classify_embeddings_with_slots(embs)
    ref, ref_slot_logits = _torch_probs(model_dir, embs)
    np.testing.assert_allclose(probs, ref, atol=1e-4, rtol=0)
    assert probs.argmax(axis=1).tolist() == ref.argmax(axis=1).tolist()
    if "slots" in variant:
        assert backend.slot_space is not None and slot_probs is not None
        np.testing.assert_allclose(slot_probs, backend.slot_space.probabilities(
            ref_slot_logits), atol=1e-4, rtol=0)
    else:
        assert slot_probs is None and ref_slot_logits is None
    # Streaming through the scorer gives the same row as the batch.
    scorer = backend.utterance_scorer()
    for s in range(0, audios[2].size, 4000):
        scorer.push(audios[2][s : s + 4000])
    np.testing.assert_allclose(scorer.result(), probs[2], atol=1e-5, rtol=0)


def test_compact_model_runs_with_torch_and_transformers_unimportable(tmp_path: Path) -> None:
    model_dir = _save(tmp_path / "m", frontends.WHISPER_TINY_EN, slot_values=SLOTS,
                      intent_slots=INTENT_SLOTS)
    audio = speechlike(2 * SR, seed=3)
    np.save(tmp_path / "a.npy", audio)
    expected = load_backend(model_dir).utterance_scorer()
    expected.push(audio)
    code = f"""
import json, sys
import numpy as np
sys.modules["torch"] = None  # any import of them raises ImportError
sys.modules["transformers"] = None
from intentd.daemon.model.loader import load_backend
b = load_backend({str(model_dir)!r})
s = b.utterance_scorer()
s.push(np.load({str(tmp_path / 'a.npy')!r}))
print(json.dumps(s.result().tolist()))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    np.testing.assert_allclose(json.loads(p.stdout), expected.result(), atol=1e-6)


def test_missing_or_broken_weights_are_one_line(tmp_path: Path) -> None:
    model_dir = _save(tmp_path / "m", frontends.SPEECH_EMBEDDING)
    (model_dir / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"model.safetensors: cannot read it as safetensors"):
        load_backend(model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(DataError, match=r"no model.safetensors .*pytorch_model.bin"):
        load_backend(model_dir)


def test_erf_and_gelu_match_the_exact_functions() -> None:
    import math

    from intentd.daemon.model.compact_numpy import erf, gelu

    x = np.linspace(-7, 7, 20001)
    exact = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - exact).max() < 2e-7
    xt = torch.from_numpy(x.astype(np.float32))
    np.testing.assert_allclose(gelu(x.astype(np.float32)),
                               torch.nn.functional.gelu(xt).numpy(), atol=5e-6, rtol=0)
