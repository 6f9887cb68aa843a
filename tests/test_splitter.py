"""The command splitter (intentd.daemon.segmentation.splitter) with a scripted model: which
pauses end a command, which answers come early, which parts are tails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intentd.daemon.output.events import REJECT_LABEL
from intentd.daemon.segmentation.settings import SegmentationConfig
from intentd.daemon.segmentation.splitter import Command, CommandSplitter, Scored, _logit

# Audio at 1 kHz (a sample is a millisecond); each word is a run of one sample value, so the
# scripted model can tell which words an audio span holds.
WORDS = {"turn": 0.11, "on": 0.12, "lights": 0.13, "weather": 0.21, "today": 0.22,
         "please": 0.31}


def word(name: str, ms: int) -> np.ndarray:
    return np.full(ms, WORDS[name], np.float32)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms, np.float32)


class Model:
    """Scores by the set of words heard; unknown sets are the rejection class."""

    def __init__(self, verdicts: dict[tuple[str, ...], tuple[str, float]]) -> None:
        self.verdicts = {frozenset(k): v for k, v in verdicts.items()}
        self.calls: list[frozenset[str]] = []

    def __call__(self, audio: np.ndarray) -> Scored:
        heard = frozenset(n for n, v in WORDS.items() if np.any(np.isclose(audio, v)))
        self.calls.append(heard)
        label, score = self.verdicts.get(heard, (REJECT_LABEL, 0.99))
        probs = np.array([score, 1.0 - score])
        return Scored(probs, None, label, score)


def splitter(model: Model, early_after_ms: int = 400, **kw: float) -> CommandSplitter:
    cfg = SegmentationConfig(mode="model", early_after_ms=early_after_ms, **kw)
    return CommandSplitter(cfg, model, utterance_id=5, voiced_start_sample=300,
                           start_sample=0, min_speech_samples=250)


def summary(commands: list[Command]) -> list[tuple[int, int, int, str, int, str | None]]:
    return [(c.utterance_id, c.start_sample, c.end_sample, c.end, c.decided_sample,
             None if c.scored is None else c.scored.label) for c in commands]


LIGHTS = ("turn", "on", "lights")
WEATHER = ("weather", "today")


def test_a_confident_command_is_answered_at_the_early_mark_and_not_before() -> None:
    model = Model({LIGHTS: ("lights_on", 0.99)})
    s = splitter(model)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    assert s.pause(1300, 300, 1600, silence(300)) == []
    got = s.pause(1300, 400, 1700, silence(300))
    assert summary(got) == [(5, 300, 1300, "early", 1700, "lights_on")]
    # the heard audio: pre-roll, the words, the post-roll
    assert got[0].audio.size == 1300 + 300
    assert s.end(1300, 1600, "silence", 2600) == []  # nothing was said after the answer


def test_no_early_answer_for_the_rejection_class_or_an_unsure_command() -> None:
    for verdict in ((REJECT_LABEL, 0.99), ("lights_on", 0.85)):
        s = splitter(Model({LIGHTS: verdict}))
        s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                                  word("lights", 500)]))
        assert s.pause(1300, 300, 1600, silence(300)) == []
        assert s.pause(1300, 400, 1700, silence(300)) == []
        got = s.end(1300, 1600, "silence", 2600)
        assert summary(got) == [(5, 300, 1300, "silence", 2600, verdict[0])]


def test_early_answers_off() -> None:
    model = Model({LIGHTS: ("lights_on", 0.999)})
    s = splitter(model, early_after_ms=0)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    assert s.pause(1300, 400, 1700, silence(300)) == []
    # the end comes after that pause: its verdict stands, scored once
    assert summary(s.end(1300, 1600, "silence", 2600)) == [
        (5, 300, 1300, "silence", 2600, "lights_on")]
    assert len(model.calls) == 1


def test_an_utterance_without_pauses_is_left_to_the_worker() -> None:
    model = Model({})
    s = splitter(model)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200)]))
    got = s.end(800, 1100, "max_length", 1100)
    assert summary(got) == [(5, 300, 800, "max_length", 1100, None)]
    assert got[0].audio.size == 800 and model.calls == []  # scored with the other verdicts


def two_commands(s: CommandSplitter) -> list[Command]:
    """'turn on the lights' [500 ms] 'weather today', early answers off."""
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    assert s.pause(1300, 300, 1600, silence(300)) == []
    s.resume(1800, 9, silence(300))
    s.push(1800, np.concatenate([word("weather", 600), word("today", 400), silence(300)]))
    return s.end(2800, 3100, "silence", 4100)


def test_a_pause_between_two_commands_splits_them() -> None:
    model = Model({LIGHTS: ("lights_on", 0.99), WEATHER: ("weather", 0.995),
                   LIGHTS + WEATHER: ("weather", 0.9)})
    got = two_commands(splitter(model, early_after_ms=0))
    assert summary(got) == [(5, 300, 1300, "split", 4100, "lights_on"),
                            (9, 1800, 2800, "silence", 4100, "weather")]
    assert got[1].audio.size == 300 + 1000 + 300  # its own pre-roll, words and post-roll


def test_joined_surer_than_either_part_keeps_one_command() -> None:
    model = Model({LIGHTS: ("lights_on", 0.99), WEATHER: ("weather", 0.995),
                   LIGHTS + WEATHER: ("weather", 0.9999)})
    assert summary(two_commands(splitter(model, early_after_ms=0))) == [
        (5, 300, 2800, "silence", 4100, "weather")]


def test_a_sure_command_after_a_less_sure_one_is_split_off() -> None:
    """The first part is a command, said less clearly (0.85: log-odds 1.7); the second is
    sure (0.9999: 9.2); the joined audio (0.95: 2.9) is less sure than the two on average,
    though surer than the first part alone."""
    model = Model({LIGHTS: ("lights_on", 0.85), WEATHER: ("weather", 0.9999),
                   LIGHTS + WEATHER: ("weather", 0.95)})
    assert summary(two_commands(splitter(model, early_after_ms=0))) == [
        (5, 300, 1300, "split", 4100, "lights_on"), (9, 1800, 2800, "silence", 4100, "weather")]
    # joined surer than that average (0.9995: 7.6 > 5.5): one command
    model = Model({LIGHTS: ("lights_on", 0.85), WEATHER: ("weather", 0.9999),
                   LIGHTS + WEATHER: ("weather", 0.9995)})
    assert summary(two_commands(splitter(model, early_after_ms=0))) == [
        (5, 300, 2800, "silence", 4100, "weather")]


def test_the_next_command_may_start_with_a_pause_of_its_own() -> None:
    """'turn on the lights' [500 ms] 'weather' [500 ms] 'today': 'weather' alone is no
    command, so the first pause stays the candidate until 'weather today' is one."""
    model = Model({LIGHTS: ("lights_on", 0.99), ("weather",): (REJECT_LABEL, 0.9),
                   (*LIGHTS, "weather"): ("lights_on", 0.7), WEATHER: ("weather", 0.999),
                   LIGHTS + WEATHER: ("weather", 0.9)})
    s = splitter(model, early_after_ms=0)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    assert s.pause(1300, 300, 1600, silence(300)) == []
    s.resume(1800, 9, silence(300))
    s.push(1800, word("weather", 600))
    assert s.pause(2400, 300, 2700, silence(300)) == []
    s.resume(2900, 10, silence(300))
    s.push(2900, np.concatenate([word("today", 400), silence(300)]))
    got = s.end(3300, 3600, "silence", 4600)
    assert summary(got) == [(5, 300, 1300, "split", 4600, "lights_on"),
                            (9, 1800, 3300, "silence", 4600, "weather")]


def test_log_odds_keep_their_precision_near_certainty() -> None:
    """Scores that round to 1.0 still compare by the other classes' probabilities."""
    sure = np.array([1.0, 1e-9, 1e-9], np.float32)
    surer = np.array([1.0, 1e-12, 1e-12], np.float32)
    assert _logit(Scored(surer, None, "a", 1.0), 0.8) > _logit(Scored(sure, None, "a", 1.0), 0.8)
    assert _logit(Scored(sure, None, REJECT_LABEL, 1.0), 0.8) == -math.inf


@pytest.mark.parametrize("after", [(REJECT_LABEL, 0.99), ("weather", 0.7)])
def test_a_part_that_is_no_sure_command_is_not_split_off(after: tuple[str, float]) -> None:
    model = Model({LIGHTS: ("lights_on", 0.99), WEATHER: after,
                   LIGHTS + WEATHER: ("weather", 0.6)})
    assert summary(two_commands(splitter(model, early_after_ms=0))) == [
        (5, 300, 2800, "silence", 4100, "weather")]


def test_a_command_with_a_pause_inside_stays_whole() -> None:
    """'turn on' [600 ms] 'the lights please': the first part is no command."""
    model = Model({("turn", "on"): (REJECT_LABEL, 0.9), ("lights", "please"): ("lights_on", 0.6),
                   ("turn", "on", "lights", "please"): ("lights_on", 0.999)})
    s = splitter(model)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 300)]))
    assert s.pause(900, 300, 1200, silence(300)) == []
    assert s.pause(900, 400, 1300, silence(300)) == []
    s.resume(1500, 6, silence(300))
    s.push(1500, np.concatenate([word("lights", 400), word("please", 300)]))
    assert s.pause(2200, 300, 2500, silence(300)) == []
    got = s.pause(2200, 400, 2600, silence(300))
    assert summary(got) == [(5, 300, 2200, "early", 2600, "lights_on")]


def answered_then(s: CommandSplitter, *words: str) -> list[Command]:
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    s.pause(1300, 300, 1600, silence(300))
    assert len(s.pause(1300, 400, 1700, silence(300))) == 1  # answered early
    s.resume(2000, 8, silence(300))
    s.push(2000, np.concatenate([word(w, 400) for w in words]))
    end = 2000 + 400 * len(words)
    return s.end(end, end + 300, "silence", end + 1300)


def test_what_follows_an_early_answer_and_completes_it_is_its_tail() -> None:
    model = Model({LIGHTS: ("lights_on", 0.99), ("please",): (REJECT_LABEL, 0.8),
                   (*LIGHTS, "please"): ("lights_on", 0.999)})
    assert answered_then(splitter(model), "please") == []


def test_the_same_intent_after_an_early_answer_is_its_tail_unless_sure_on_its_own() -> None:
    # unsure alone, and the answer is surer with it: the answered command's tail
    model = Model({LIGHTS: ("lights_on", 0.99), ("lights",): ("lights_on", 0.85)})
    assert answered_then(splitter(model), "lights") == []
    # sure enough to be answered early itself: the command said again
    model = Model({LIGHTS: ("lights_on", 0.99), ("please",): ("lights_on", 0.95),
                   (*LIGHTS, "please"): ("lights_on", 0.999)})
    assert summary(answered_then(splitter(model), "please")) == [
        (8, 2000, 2400, "silence", 3700, "lights_on")]
    # ... unless the answer with it is far surer than either alone (odds 99 999 against
    # 100 x 99): two weak halves of one command
    model = Model({LIGHTS: ("lights_on", 0.99), ("please",): ("lights_on", 0.95),
                   (*LIGHTS, "please"): ("lights_on", 0.99999)})
    assert answered_then(splitter(model), "please") == []


def test_a_command_after_an_early_answer_gets_its_own_event() -> None:
    model = Model({LIGHTS: ("lights_on", 0.99), WEATHER: ("weather", 0.98),
                   LIGHTS + WEATHER: ("lights_on", 0.6)})
    got = answered_then(splitter(model), "weather", "today")
    assert summary(got) == [(8, 2000, 2800, "silence", 4100, "weather")]


def test_the_start_of_the_next_command_is_not_taken_for_a_tail() -> None:
    """After an early answer: 'weather' [pause] 'today'; neither part is a command alone,
    the answered command joined with 'weather' is less sure: it is the next command's
    start."""
    model = Model({LIGHTS: ("lights_on", 0.99), ("weather",): (REJECT_LABEL, 0.7),
                   ("today",): (REJECT_LABEL, 0.9), WEATHER: ("weather", 0.999),
                   (*LIGHTS, "weather"): ("lights_on", 0.9)})
    s = splitter(model)
    s.push(0, np.concatenate([silence(300), word("turn", 300), word("on", 200),
                              word("lights", 500)]))
    s.pause(1300, 300, 1600, silence(300))
    assert len(s.pause(1300, 400, 1700, silence(300))) == 1
    s.resume(2000, 8, silence(300))
    s.push(2000, word("weather", 500))
    assert s.pause(2500, 300, 2800, silence(300)) == []
    assert s.pause(2500, 400, 2900, silence(300)) == []
    s.resume(3100, 9, silence(300))
    s.push(3100, word("today", 400))
    got = s.end(3500, 3800, "silence", 4800)
    assert summary(got) == [(8, 2000, 3500, "silence", 4800, "weather")]


def test_a_part_too_short_for_a_command_is_never_scored() -> None:
    model = Model({})
    s = splitter(model)
    s.push(0, np.concatenate([silence(300), word("turn", 200)]))
    assert s.pause(500, 300, 800, silence(300)) == []
    assert model.calls == []
    assert s.end(500, 800, "silence", 1800) == []
