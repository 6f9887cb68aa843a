"""Slots in templates: tags, substitutions, number ranges, built-in lists, balanced sampling,
spec errors with file and line, and the slots column of synthesized metadata."""

from __future__ import annotations

import collections
import csv
import json
import random
from pathlib import Path

import pytest

from intentd.daemon.errors import DataError
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.template_syntax import TemplateError, parse
from intentd.trainer.synthesis.templates import Utterance, expand, expand_utterances


def slots_of(template: str, slots: dict[str, list[str]] | None = None) -> dict[str, dict]:
    return {u.text: u.slot_dict() for u in expand_utterances(template, slots or {})}


def test_tags_on_groups_slot_lists_and_words() -> None:
    got = slots_of("turn (on | off){state} the $room{room} light[s]",
                   {"room": ["kitchen", "(living | dining) room"]})
    assert got["turn on the kitchen light"] == {"state": "on", "room": "kitchen"}
    assert got["turn off the dining room lights"] == {"state": "off", "room": "dining room"}
    assert slots_of("make it red{color}") == {"make it red": {"color": "red"}}
    assert len(got) == 12


def test_substitutions_and_tag_values() -> None:
    got = slots_of("set it to (fifty:50 | half:50 | (a quarter):25){percent} please:")
    assert got == {"set it to fifty please": {"percent": "50"},
                   "set it to half please": {"percent": "50"},
                   "set it to a quarter please": {"percent": "25"}}
    got = slots_of("(lounge | sitting room){room:living_room}")
    assert got == {"lounge": {"room": "living_room"}, "sitting room": {"room": "living_room"}}
    (u,) = expand_utterances("$room{room}", {"room": ["(living room):living_room"]})
    assert u == Utterance("living room", u.slots) and u.slots[0].text == "living room"
    assert u.slot_dict() == {"room": "living_room"}


def test_number_ranges_and_built_in_lists() -> None:
    got = slots_of("(1..3){n} (0..20,10){m}")
    assert got["two ten"] == {"n": "2", "m": "10"} and len(got) == 9
    assert slots_of("(21..21){n}") == {"twenty one": {"n": "21"}}
    timer = slots_of("set a timer for $duration{seconds}")
    assert timer["set a timer for five minutes"] == {"seconds": "300"}
    assert timer["set a timer for an hour and a half"] == {"seconds": "5400"}
    assert timer["set a timer for one hour"] == {"seconds": "3600"}
    level = slots_of("$percentage{level}")
    assert level["one hundred percent"] == {"level": "100"} and len(level) == 101
    assert slots_of("$temperature{t}")["twenty one degrees"] == {"t": "21"}
    # A spec's own list of a built-in name replaces it.
    assert expand("$integer", {"integer": ["one", "two"]}) == ["one", "two"]


@pytest.mark.parametrize(("template", "message"), [
    ("turn on {room}", "a tag at column 9 follows a space"),
    ("{room} light", "a tag at column 1 follows nothing"),
    ("set {room", "'{' at column 5 does not start a tag"),
    ("set room}", "'}' at column 9 closes no tag"),
    ("(5..1){n}", "range at column 1 needs LO <= HI"),
    ("(0..100000)", "more than 10000 numbers"),
])
def test_syntax_errors_name_the_column(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace("{", r"\{")):
        parse(template)


def test_untagged_templates_expand_as_plain_text() -> None:
    assert slots_of("(turn | switch) on") == {"switch on": {}, "turn on": {}}


def test_sampling_balances_the_values_of_a_slot(tmp_path: Path) -> None:
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(
        'intents:\n  go:\n    - "go to the $room{room} [please] [now] [thanks]"\n'
        'slots:\n  room: [kitchen, "(living | dining | family | guest | spare) room"]\n')
    spec = load_spec(spec_path)
    assert spec.intent_slots == {"go": ("room",)}
    utts = spec.utterances("go", 60, random.Random(0))
    assert len({u.text for u in utts}) == len(utts) == 48  # every sentence, no repeat
    many = [spec._grammar().sample(parse(spec.intents["go"][0]), random.Random(i))
            for i in range(400)]
    rooms = collections.Counter(d.slots[0].value == "kitchen" for d in many)
    # Uniform over the slot's values (1 of 2), not over sentences (8 of 48).
    assert 0.4 < rooms[True] / 400 < 0.6


def test_spec_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text('intents:\n  a:\n    - "turn on"\n    - "set {level"\n')
    with pytest.raises(DataError, match=rf"^{p}:4: '{{' at column 5 does not start a tag"):
        load_spec(p)
    p.write_text('intents:\n  a:\n    - "x $room{r}"\nslots:\n  room: [a]\n  room: [b]\n')
    with pytest.raises(DataError, match=rf"^{p}:6: slot 'room' is defined twice"):
        load_spec(p)


@pytest.mark.slow
def test_synth_writes_each_utterances_slots(tmp_path: Path) -> None:
    from intentd.trainer.synthesis.synth import SynthOptions, synthesize

    spec = tmp_path / "lights.yaml"
    spec.write_text('intents:\n'
                    '  lights_on:\n    - "turn on the (kitchen | bedroom){room} light"\n'
                    '  timer:\n    - "set a timer for (1..3){minutes} minutes"\n')
    out = tmp_path / "data"
    synthesize(spec, out, SynthOptions(per_intent=4, piper_share=0.0, flite_share=0.0,
                                       reject_share=0.0, seed=0, progress=False))
    rows = []
    for split in ("train", "test"):
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == 8
    words = {"1": "one", "2": "two", "3": "three"}
    for r in rows:
        slots = json.loads(r["slots"])
        if r["label"] == "lights_on":
            assert slots == {"room": "kitchen" if "kitchen" in r["text"] else "bedroom"}
        else:
            assert list(slots) == ["minutes"]
            assert r["text"] == f"set a timer for {words[slots['minutes']]} minutes"
    meta = json.loads((out / "spec.json").read_text())
    assert meta["intent_slots"] == {"lights_on": ["room"], "timer": ["minutes"]}
