"""The rejection class: audio the VAD lets through that is not a command.

A closed-set classifier must give every segment one of the intents, so a cough, a TV in the
background or a sentence to someone else in the room comes out as the intent it sounds
least unlike, and only the score threshold stands between it and an action. ``synth``
therefore adds a class :data:`REJECT_LABEL` ("_none") to the data set, made of:

* ``speech`` (50%): out-of-domain sentences (chit-chat, fillers, words to other people)
  spoken by the same voice pools as the intents, through the same augmentation; with
  ``--cut-share`` a share of them are cut commands (:func:`cut_commands`): the start or the
  end of a command's audio, cut between two words, that is no command of the spec alone;
* ``babble`` (35%): 2-5 overlapped talkers saying such sentences, 1-15 s (a room, a TV);
* ``noise`` (15%): pink, brown, white noise or appliance hum, 1-4 s, at random levels.

The daemon reports a segment whose best label is ``_none`` as ``no_match``
(``intentd.daemon.engine.worker``). The sentences are generic on purpose; a domain whose commands
look like chit-chat should pass ``--reject-share 0`` or, better, its own negatives.
"""

from __future__ import annotations

import random

import numpy as np

from intentd.daemon.output.events import REJECT_LABEL
from intentd.trainer.synthesis import augment as aug
from intentd.trainer.synthesis import tts_espeak
from intentd.trainer.synthesis.templates import sample_expansions

__all__ = ["BACKGROUND_KINDS", "KINDS", "REJECT_LABEL", "kind_of", "render_background", "sentences"]

# Share of each kind in the rejection class (speech is what the VAD passes most often).
KINDS: tuple[tuple[str, float], ...] = (("speech", 0.5), ("babble", 0.35), ("noise", 0.15))
# A TV or a room full of talkers keeps the VAD open until ``max_utterance_s`` splits it,
# so babble clips run as long as such segments do; noise segments are usually short.
_SECONDS = {"babble": (1.0, 15.0), "noise": (1.0, 4.0)}
BACKGROUND_KINDS = tuple(_SECONDS)  # rendered without TTS of one voice: no speaker

_TEMPLATES = (
    "(um | uh | hmm | er) [(okay | right | yeah | so)]",
    "(okay | yeah | right | sure | alright | no | yes) [(thanks | thank you | fine | great)]",
    "(hold on | wait | one second | just a moment) [(please | a sec)]",
    "(sorry | pardon) (i didn't catch that | what did you say | can you repeat that)",
    "(can | could) you (hear | understand) me [now]",
    "[(hi | hello)] (is anyone there | are you still there | who am i speaking to)",
    "(i'll | we'll) (call you | talk) (later | tomorrow | after lunch)",
    "the (weather | traffic | train) (is terrible | was fine | looks bad) (today | this morning)",
    "(did you see | have you watched) the (game | match | news | film) (last night | yesterday)",
    "(what time | what day | when) is (dinner | the party | the meeting | the match)",
    "(can you | could you) (pass the salt | grab my coat | hand me that pen | hold this for me)",
    "(the kids are | the dog is | my neighbour is) (making a lot of noise | outside | asleep)",
    "(i'm | we're) (running late | on the way | nearly there | stuck in traffic)",
    "(let me | i need to) (think about it | check with my (wife | husband | boss) | find my "
    "glasses)",
    "that (sounds | looks) (good | great | fine | strange) (to me | actually)",
    "(honey | mum | dad | guys) (dinner is ready | where are my keys | we are leaving now)",
    "(we | i) (went | drove | walked) to the (beach | park | shops | station) (yesterday | "
    "last weekend | this morning)",
    "(my | our) (sister | brother | friend | cousin) is (visiting | moving house | getting "
    "married) (next week | in june | soon)",
    "(thank you so much | thanks a lot | cheers) [(for your help | bye | goodbye)]",
    "(how are you | how's it going | how have you been) [today]",
    "(i think | i guess | maybe) (it will | it's going to) (rain | snow | be sunny) (later | "
    "tomorrow | tonight)",
    "(the soup | dinner | the bath) is (too hot | cold | lovely) [actually]",
    "(one | two | three | four | five) (six | seven | eight | nine | ten) (oh | zero) "
    "(double two | four | nine)",
    "(no no | yes yes | yeah yeah) (that's | it's) (fine | right | not what i meant)",
    "(she | he | they) (said | told me) (it was | it's) (fine | too late | a good idea)",
    "(put | leave) (it | the box | the bags) (on the table | by the door | in the car)",
    "(i really like | i don't like | have you tried) (this song | that restaurant | the new "
    "series)",
    "(is it | was it) (raining | cold | busy) (outside | in town | at the station)",
    "(we should | let's) (go for a walk | have lunch | watch a film) (later | on sunday)",
    "(where | how) did you (park | find it | get that)",
    "(i've been | we were) (waiting | queueing | on hold) for (ages | twenty minutes | an hour)",
    "(the | our) (printer | dishwasher | car | washing machine) (is making a weird noise | broke "
    "again | needs fixing)",
    "(happy birthday | congratulations | good luck) [(mate | love | everyone)]",
    "(can i | may i) (ask | speak to) (who is calling | the manager | your colleague)",
)
_SLOTS: dict[str, list[str]] = {}


def sentences(n: int, rng: random.Random) -> list[str]:
    """``n`` out-of-domain sentences, spread evenly over the templates."""
    out: list[str] = []
    per = -(-n // len(_TEMPLATES))
    for t in _TEMPLATES:
        out.extend(sample_expansions(t, _SLOTS, per, rng))
    rng.shuffle(out)
    return out[:n]


def cut_commands(commands: list[str], n: int, rng: random.Random) -> list[str]:
    """``n`` of ``commands`` (drawn with replacement) to be spoken whole and cut between two
    words (:func:`intentd.trainer.synthesis.pauses.cut`): only those of three words or more
    of which no start and no end is a command itself, so no cut piece can be one. A speaker
    who pauses mid-command, or says two commands back to back, leaves the daemon such pieces
    to weigh (intentd.daemon.segmentation): the model learns that they are no command.

    Empty when no command qualifies."""
    complete = {" ".join(c.lower().split()) for c in commands}

    def cuttable(words: list[str]) -> bool:
        parts = [words[:k] for k in range(1, len(words))] + [words[k:] for k in
                                                             range(1, len(words))]
        return len(words) >= 3 and not any(" ".join(p).lower() in complete for p in parts)

    pool = sorted({c for c in commands if cuttable(c.split())})
    return [pool[rng.randrange(len(pool))] for _ in range(n)] if pool else []


def kind_of(index: int, n: int) -> str:
    """The kind of the ``index``-th of ``n`` rejection utterances (fixed shares, in order)."""
    edge = 0.0
    for kind, share in KINDS:
        edge += share * n
        if index < round(edge):
            return kind
    return KINDS[-1][0]


def render_background(kind: str, seed: int, speakers: list[tts_espeak.EspeakSpeaker],
                      sample_rate_hz: int = 16000) -> np.ndarray:
    """A clip of ``babble`` (talkers from ``speakers``) or ``noise`` at a random level."""
    if kind not in _SECONDS:
        raise ValueError(f"unknown background kind {kind!r}")
    rng = np.random.default_rng(seed)
    n = int(rng.uniform(*_SECONDS[kind]) * sample_rate_hz)
    if kind == "babble":
        talkers = int(rng.integers(2, 6))
        out = np.zeros(n, dtype=np.float32)
        # One sentence per talker, looped from a random point: the clip is at most 4 s,
        # and TTS calls are what makes babble the slowest part of synth.
        for t, txt in enumerate(sentences(talkers, random.Random(seed))):
            sp = speakers[int(rng.integers(len(speakers)))]
            start = int(rng.integers(0, sample_rate_hz // 2))
            audio = tts_espeak.speak(txt, sp, random.Random(seed + t), sample_rate_hz)
            seg = aug.fit_length(audio, n - start, rng)
            out[start:] += seg * float(rng.uniform(0.5, 1.0))
    else:
        colour = ("pink", "brown", "white", "hum")[int(rng.integers(4))]
        out = aug.make_noise(colour, n, rng, sample_rate_hz)
    rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64)))) or 1.0
    # -35..-15 dBFS: from a quiet room to a loud one; the augmentation adds gain on top.
    return (out / rms * 10 ** (rng.uniform(-35.0, -15.0) / 20)).astype(np.float32)
