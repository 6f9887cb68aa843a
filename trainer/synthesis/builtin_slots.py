"""Slot lists every spec can use without defining them: numbers, percentages,
temperatures and durations, spoken in words and reported as plain numbers.

========================  ==========================================  ===============
list                      spoken                                      reported
========================  ==========================================  ===============
``$integer``              zero ... one hundred                        ``0`` ... ``100``
``$percentage``           zero percent ... one hundred percent        ``0`` ... ``100``
``$temperature``          five degrees ... thirty five degrees        ``5`` ... ``35``
``$duration``             one second, five minutes, two hours, half   seconds: ``1``,
                          an hour, an hour and a half, ...            ``300``, ``7200``
========================  ==========================================  ===============

Tag them to capture the value: ``set a timer for $duration{seconds}``. A spec's own
``slots:`` list of the same name replaces the built-in one.
"""

from __future__ import annotations

import functools

from intentd.trainer.synthesis.number_words import number_words

NAMES: tuple[str, ...] = ("integer", "percentage", "temperature", "duration")


def _entry(spoken: str, value: int) -> str:
    return f"({spoken}):{value}"


def _duration() -> list[str]:
    out: list[str] = []
    for unit, seconds, top in (("second", 1, 59), ("minute", 60, 59), ("hour", 3600, 12)):
        out.append(_entry(f"(one | {'an' if unit == 'hour' else 'a'}) {unit}", seconds))
        out += [_entry(f"{number_words(n)} {unit}s", n * seconds) for n in range(2, top + 1)]
    out += [_entry("half a minute", 30), _entry("half an hour", 1800),
            _entry("a quarter of an hour", 900), _entry("an hour and a half", 5400),
            _entry("a minute and a half", 90)]
    return out


@functools.lru_cache(maxsize=1)
def lists() -> dict[str, tuple[str, ...]]:
    """``{name: values}`` in template syntax."""
    return {
        "integer": tuple(_entry(number_words(n), n) for n in range(0, 101)),
        "percentage": tuple(_entry(f"{number_words(n)} percent", n) for n in range(0, 101)),
        "temperature": tuple(_entry(f"{number_words(n)} degrees", n) for n in range(5, 36)),
        "duration": tuple(_duration()),
    }
