"""Template expansion, sampling and spec validation (intentd.trainer.synthesis.templates)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from intentd.daemon.errors import DataError
from intentd.trainer.synthesis.spec_file import load_spec
from intentd.trainer.synthesis.templates import (
    count_expansions,
    expand,
    sample_expansions,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "intents"


def test_alternatives_optionals_and_suffix() -> None:
    assert expand("[please] (turn | switch) on the light[s]", {}) == [
        "please switch on the light", "please switch on the lights",
        "please turn on the light", "please turn on the lights",
        "switch on the light", "switch on the lights",
        "turn on the light", "turn on the lights",
    ]


def test_nested_groups_and_slots_with_syntax() -> None:
    slots = {"room": ["kitchen", "(living | dining) room"], "level": ["[very] low", "high"]}
    assert expand("set $room to $level", slots) == [
        "set dining room to high", "set dining room to low", "set dining room to very low",
        "set kitchen to high", "set kitchen to low", "set kitchen to very low",
        "set living room to high", "set living room to low", "set living room to very low",
    ]


def test_duplicates_and_whitespace_are_normalized() -> None:
    assert expand("a  [b]  (c | c)", {}) == ["a b c", "a c"]
    assert count_expansions("a  [b]  (c | c)", {}) == 4


def test_top_level_alternatives_and_empty_branch() -> None:
    assert expand("yes | no ( | please)", {}) == ["no", "no please", "yes"]


def test_sampling_is_capped_deterministic_and_distinct() -> None:
    big = " ".join(["(a | b | c | d | e | f | g | h | i | j)"] * 6)  # 10**6 derivations
    assert count_expansions(big, {}) == 10**6
    s1 = sample_expansions(big, {}, 50, random.Random(3))
    s2 = sample_expansions(big, {}, 50, random.Random(3))
    assert s1 == s2
    assert len(s1) == len(set(s1)) == 50
    assert all(len(s.split()) == 6 for s in s1)
    # Not biased toward the first branch: every letter shows up in first position.
    firsts = {s.split()[0] for s in sample_expansions(big, {}, 400, random.Random(0))}
    assert firsts == set("abcdefghij")


def test_small_template_sampling_returns_everything_when_n_is_large() -> None:
    assert sample_expansions("(x | y) z", {}, 10, random.Random(0)) == ["x z", "y z"]
    got = sample_expansions("(a | b | c | d)", {}, 2, random.Random(0))
    assert len(got) == 2 and set(got) <= {"a", "b", "c", "d"}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_spec_reads_raw_strings(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, "intents:\n  on:\n    - turn $x on\nslots:\n"
                                      "  x: [on, 12, light]\n"))
    assert spec.labels == ("on",)
    assert spec.slots == {"x": ("on", "12", "light")}  # YAML 1.1 booleans/ints stay text
    assert spec.sentences("on", 10, random.Random(0)) != []


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("intents:\n  a:\n    - hello\n    - call $nobody now\n", 4, "undefined slot $nobody"),
        ("intents:\n  a:\n    - (open the door\n", 3, "unbalanced '('"),
        ("intents:\n  a:\n    - open] the door\n", 3, "unbalanced ']'"),
        ("intents:\n  a:\n    - open () door\n", 3, "empty group"),
        ("intents:\n  a: [x]\nextra: 1\n", 3, "unknown top-level key 'extra'"),
        ("intents:\n  a:\n  b: [x]\n", 2, "intent 'a' has no templates"),
        ("intents:\n  a:\n    - [x, y]\n", 3, "must be a string"),
        ("intents:\n  a: [x]\nslots:\n  s:\n    - (a | b\n", 5, "unbalanced '('"),
    ],
)
def test_spec_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                        needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert needle in msg
    assert "\n" not in msg


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read intent spec"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["banking", "home", "coffee", "coffee_maker"])
def test_example_specs_load(name: str) -> None:
    spec = load_spec(EXAMPLES / f"{name}.yaml")
    minimum = {"banking": 15, "home": 3, "coffee": 3, "coffee_maker": 80}[name]
    assert all(len(t) >= minimum for t in spec.intents.values())
    for label in spec.labels:
        assert len(spec.sentences(label, 20, random.Random(0))) == 20


def test_banking_has_the_minds14_intents() -> None:
    spec = load_spec(EXAMPLES / "banking.yaml")
    assert set(spec.labels) == {
        "abroad", "address", "app_error", "atm_limit", "balance", "business_loan",
        "card_issues", "cash_deposit", "direct_debit", "freeze", "high_value_payment",
        "joint_account", "latest_transactions", "pay_bill",
    }


def test_coffee_has_one_intent_per_drink() -> None:
    spec = load_spec(EXAMPLES / "coffee.yaml")
    assert set(spec.labels) == {
        "americano", "cappuccino", "coffee", "drip_coffee", "espresso", "house_coffee",
        "iced_coffee", "iced_mocha", "latte", "mocha",
    }


def test_home_and_coffee_maker_report_slots() -> None:
    home = load_spec(EXAMPLES / "home.yaml")
    assert home.intent_slots["set_brightness"] == ("level", "room")
    assert home.intent_slots["set_timer"] == ("seconds",)
    assert home.intent_slots["set_temperature"] == ("room", "temperature")
    maker = load_spec(EXAMPLES / "coffee_maker.yaml")
    assert maker.labels == ("orderDrink",)
    assert maker.intent_slots["orderDrink"] == (
        "coffeeDrink", "milkAmount", "numberOfShots", "roast", "size", "sugarAmount")
    utts = maker.utterances("orderDrink", 200, random.Random(1))
    assert len(utts) == 200
    for u in utts:  # every value is one of its list's phrases, and it is what was said
        assert "coffeeDrink" in u.slot_dict()
        for s in u.slots:
            assert s.value in maker.slots[s.name] and s.text == s.value and s.text in u.text
