"""Canonical sentences: patterns and slot words from a spec, and the daemon's rendering."""

from __future__ import annotations

from pathlib import Path

from intentd.daemon.model.sentences import Sentences, render_text, slot_key
from intentd.trainer.synthesis.canonical import sentence_patterns, slot_texts
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.templates import Spec

SPEC = """\
intents:
  lights_on:
    - "[$hey] (turn | switch) on the [$room{room}] light[s] [please]"
    - "lights on [in the $room{room}]"
  set_timer:
    - "(start | set) a timer for $duration{seconds}"
  set_brightness:
    - "(set | dim) the [$room{room}] light[s] to $percent{level}"
    - "(dim | brighten) the $room{room} light[s]"
slots:
  hey: [hey, okay]
  room: [kitchen, "(living room):living_room", "lounge:living_room"]
  percent: ["(fifty percent | half):50", "(ten percent):10"]
"""


def _spec(tmp_path: Path) -> Spec:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return load_spec(path)


def test_patterns_take_the_fewest_words_of_the_first_template_that_fits(tmp_path: Path) -> None:
    assert sentence_patterns(_spec(tmp_path)) == {
        "lights_on": {"": "turn on the light", "room": "turn on the {room} light"},
        "set_timer": {"seconds": "start a timer for {seconds}"},
        "set_brightness": {"level": "set the light to {level}",
                           "room": "dim the {room} light",
                           "level,room": "set the {room} light to {level}"},
    }


def test_slot_texts_are_the_words_most_often_spoken(tmp_path: Path) -> None:
    texts = slot_texts(_spec(tmp_path))
    assert texts["room"] == {"kitchen": "kitchen", "living_room": "living room"}
    assert texts["level"] == {"10": "ten percent", "50": "fifty percent"}
    assert texts["seconds"]["300"] == "five minutes"
    assert texts["seconds"]["3600"] == "one hour"


def test_render_fills_the_pattern_of_the_heard_slots() -> None:
    s = Sentences({"set_brightness": {"level,room": "set the {room} light to {level}",
                                      "level": "set the light to {level}"}},
                  {"level": {"50": "fifty percent"}, "room": {"living_room": "living room"}})
    assert s.render("set_brightness", {"room": "living_room", "level": "50"}) == (
        "set the living room light to fifty percent")
    assert s.render("set_brightness", {"level": "50"}) == "set the light to fifty percent"
    # No pattern for this set of slots, or no patterns at all: the name and the words.
    assert s.render("set_brightness", {"room": "living_room"}) == "set brightness living room"
    assert render_text(None, "lights_on", {"room": "kitchen"}) == "lights on kitchen"
    assert slot_key(["room", "level"]) == "level,room"
    assert Sentences.from_config(None, None) is None
