"""Slot heads: the slot space, decoding under the spec's structure, command acceptance
(intent and every slot exact), the model's outputs and loss, and the truth's slots column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from intentd.daemon.model import compact
from intentd.daemon.model.slots import SlotFill, SlotSpace
from intentd.daemon.score import Span, main, summarize
from intentd.trainer.fitting import slots
from intentd.trainer.fitting.data import Example

VALUES = {"room": ["kitchen", "bedroom"], "level": ["10", "50", "100"]}
BY_INTENT = {"lights_on": ["room"], "set_level": ["level", "room"], "weather": []}


def space() -> SlotSpace:
    s = SlotSpace.from_config(VALUES, BY_INTENT)
    assert s is not None
    return s


def test_space_layout_is_by_slot_name_with_absent_first() -> None:
    s = space()
    assert s.names == ("level", "room")
    assert s.sizes == (4, 3)
    assert s.width == 7
    assert s.class_id("room", "bedroom") == 2
    assert s.class_id("room", None) == 0
    with pytest.raises(KeyError, match="slot 'room' has no value 'attic'"):
        s.class_id("room", "attic")
    assert SlotSpace.from_config(None, BY_INTENT) is None


@pytest.mark.parametrize(("values", "by_intent", "message"), [
    ({"room": []}, {}, "values must be distinct"),
    ({"room": ["a", "a"]}, {}, "values must be distinct"),
    ({"room": ["a"]}, {"x": ["color"]}, r"takes slot\(s\) \['color'\] that have no head"),
])
def test_space_refuses_inconsistent_configs(values: dict, by_intent: dict,
                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlotSpace.from_config(values, by_intent)


def test_decode_reports_only_the_slots_the_intent_takes() -> None:
    s = space()
    # level: 50 beats absent; room: kitchen beats absent.
    probs = np.array([0.1, 0.1, 0.7, 0.1, 0.2, 0.7, 0.1])
    assert s.decode("set_level", probs) == (SlotFill("level", "50", 0.7),
                                            SlotFill("room", "kitchen", 0.7))
    assert s.decode("lights_on", probs) == (SlotFill("room", "kitchen", 0.7),)
    assert s.decode("weather", probs) == ()
    assert s.decode(None, probs) == ()
    # absent wins: not reported
    assert s.decode("lights_on", np.array([0.1, 0.1, 0.7, 0.1, 0.6, 0.3, 0.1])) == ()


def test_probabilities_are_a_softmax_within_each_head() -> None:
    p = space().probabilities(np.array([[0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p[0, :4], 0.25)
    assert p[0, 4:].sum() == pytest.approx(1.0)
    assert p[0, 4] > 0.98


def ex(label: str, **slot_values: str) -> Example:
    return Example(uid=label, label=label, where="x", slots=tuple(sorted(slot_values.items())))


def test_space_of_examples_and_spec(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"intent_slots": {"lights_on": ["room"],
                                                 "set_level": ["level", "room"]}}))
    got = slots.slot_space([ex("lights_on", room="kitchen"), ex("set_level", level="50"),
                            ex("weather")], spec)
    assert got is not None
    assert got.values == (("level", ("50",)), ("room", ("kitchen",)))
    # set_level takes room by the spec, though no example of it said one
    assert dict(got.intent_slots) == {"lights_on": ("room",), "set_level": ("level", "room")}
    assert slots.slot_space([ex("weather")], spec) is None


def test_targets_mark_unknown_values_unscored() -> None:
    t = slots.targets([ex("set_level", level="50", room="bedroom"), ex("weather"),
                       ex("lights_on", room="attic")], space())
    assert t.tolist() == [[2, 2], [0, 0], [0, -100]]


def test_command_acceptance_needs_the_intent_and_every_slot_exact() -> None:
    s = space()
    examples = [ex("set_level", level="50", room="kitchen"), ex("set_level", level="50"),
                ex("lights_on", room="bedroom"), ex("weather")]
    logit = np.log(np.array([
        [0.1, 0.1, 0.7, 0.1, 0.2, 0.7, 0.1],  # level 50, room kitchen: right
        [0.1, 0.1, 0.7, 0.1, 0.2, 0.7, 0.1],  # an extra room: wrong
        [0.1, 0.1, 0.7, 0.1, 0.1, 0.2, 0.7],  # room bedroom (level ignored): right
        [0.1, 0.1, 0.7, 0.1, 0.2, 0.7, 0.1],  # weather has no slots: right
    ]))
    labels = ["lights_on", "set_level", "weather"]
    got = slots.score(logit, [1, 1, 0, 2], examples, labels, s)
    assert got["command_acceptance"] == 0.75
    assert got["slot_accuracy"] == {"level": 1.0, "room": pytest.approx(2 / 3, abs=1e-4)}
    # the intent wrong: the command is wrong even with the slots right
    assert slots.score(logit[:1], [0], examples[:1], labels, s)["command_acceptance"] == 0.0
    assert slots.command_correct("a", {"x": "milk"}, "a", {"x": " milk"})


def test_model_outputs_slot_logits_and_trains_them() -> None:
    cfg = compact.CompactConfig(num_labels=3, id2label=dict(enumerate(["lights_on",
                                                                      "set_level",
                                                                      "weather"])),
                                slot_values=VALUES, intent_slots=BY_INTENT,
                                embedding_dim=16, hidden_size=32)
    model = compact.CompactForAudioClassification(cfg)
    x = torch.randn(4, 12, 16)
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 6:] = 0
    labels = torch.tensor([1, 0, 2, 1])
    target = torch.tensor([[2, 1], [0, 2], [0, 0], [3, -100]])
    out = model(input_values=x, attention_mask=mask, labels=labels, slot_labels=target)
    assert out.logits.shape == (4, 3)
    assert out.slot_logits.shape == (4, 7)
    intent_only = model(input_values=x, attention_mask=mask, labels=labels).loss
    assert out.loss > intent_only  # the slot loss is added
    out.loss.backward()
    assert model.slot_heads is not None
    assert model.slot_heads.classifiers[0].weight.grad is not None
    model.eval()
    with torch.no_grad():  # padding does not change a clip's slot logits
        alone = model(input_values=x[1:2, :6], attention_mask=mask[1:2, :6]).slot_logits
        batch = model(input_values=x, attention_mask=mask).slot_logits[1]
    torch.testing.assert_close(alone[0], batch, atol=1e-5, rtol=1e-5)


def test_intent_only_config_has_no_slot_heads() -> None:
    model = compact.CompactForAudioClassification(
        compact.CompactConfig(num_labels=2, embedding_dim=16, hidden_size=32))
    assert model.slot_heads is None
    out = model(input_values=torch.randn(1, 5, 16))
    assert "slot_logits" not in out


def test_score_reports_command_acceptance_from_a_slots_column(tmp_path: Path,
                                                              capsys) -> None:
    def event(start: float, intent: str, **heard: str) -> dict:
        return {"type": "intent", "intent": intent, "start_s": start, "end_s": start + 1,
                "slots": {k: {"value": v, "score": 0.9} for k, v in heard.items()}}

    truth = [Span(0.0, 1.0, "set_level", {"level": "50", "room": "kitchen"}),
             Span(2.0, 3.0, "lights_on", {"room": "bedroom"}),
             Span(4.0, 5.0, "weather", {})]
    events = [event(0.0, "set_level", level="50", room="kitchen"),
              event(2.0, "lights_on", room="kitchen"), event(4.0, "weather")]
    s = summarize(truth, events)
    assert s["accuracy"] == 1.0
    assert s["command_acceptance"] == pytest.approx(2 / 3, abs=1e-4)
    assert "command_acceptance" not in summarize([Span(0.0, 1.0, "a")], events[:1])

    bad = tmp_path / "truth.csv"
    bad.write_text('start_s,end_s,intent,text,slots\n0,1,a,hi,"{room: kitchen}"\n')
    events_file = tmp_path / "ev.jsonl"
    events_file.write_text("")
    assert main([str(events_file), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: slots is not JSON" in err
