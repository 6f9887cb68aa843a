"""Session fixtures shared by every test module: a tiny intent spec, its synthetic speech,
a compact model trained on it, and a tiny randomly initialised wav2vec2 classifier.

Everything is built offline from the project's own code, once per test session.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger(__name__)

# Three intents with clearly different wording; bench/run.py trains on it too.
TINY_SPEC = Path(__file__).parent / "tiny.yaml"

# Utterances per intent (train + held-out voices): enough for >= 90% utterance accuracy,
# few enough that synthesis takes well under a minute on 2 cores.
TINY_PER_INTENT = 40


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small intent spec YAML: lights_on / weather / play_music."""
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def synth_data(tiny_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Audiofolder dir (train/, test/, spec.json) synthesized from ``tiny_spec``; the test
    split uses voices never heard in train."""
    from intentd.trainer.synthesis.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("synth") / "tiny"
    t0 = time.monotonic()
    # No rejection class: 40 utterances of chit-chat, babble and noise are too few to learn
    # it reliably, and the fixture's accuracy must not hinge on one utterance. Its synthesis
    # is covered in test_synth, its verdict in test_worker.
    synthesize(tiny_spec, out, SynthOptions(per_intent=TINY_PER_INTENT, piper_share=0.0,
                                            flite_share=0.0,
                                            reject_share=0.0, seed=0, progress=False))
    log.info("synth_data fixture: %.1f s", time.monotonic() - t0)
    return out


@pytest.fixture(scope="session")
def compact_model(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dir of a compact model trained by ``intentd.trainer.fitting.fit`` on ``synth_data`` (>= 90%
    held-out-voice utterance accuracy; see its report.json)."""
    from intentd.trainer.fitting.fit import DataArguments, ModelArguments, TrainArguments, fit

    out = tmp_path_factory.mktemp("models") / "compact"
    t0 = time.monotonic()
    report = fit(
        DataArguments(data=str(synth_data)),
        # The demo's head width: ~1.8x faster to train than the default 256, and what the
        # README's main command ships.
        ModelArguments(model="compact", head_channels=128),
        TrainArguments(out=str(out), batch_size=32, seed=0),
    )
    log.info("compact_model fixture: %.1f s, utterance accuracy %.3f",
             time.monotonic() - t0, report["utterance_accuracy"])
    assert json.loads((out / "report.json").read_text())["utterance_accuracy"] >= 0.9
    return out


def make_tiny_wav2vec2(out: Path, labels: tuple[str, ...] = ("a", "b")) -> Path:
    """Save a tiny random Wav2Vec2ForSequenceClassification + feature extractor to ``out``."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
        set_seed,
    )

    set_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(32, 32, 32), conv_kernel=(8, 8, 8), conv_stride=(4, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
        vocab_size=12, mask_time_prob=0.0, layerdrop=0.0,
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dir with a tiny random wav2vec2 audio classifier, usable as ``fit --model DIR``."""
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("models") / "tiny_wav2vec2")
