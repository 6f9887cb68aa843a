"""Numbers as a speaker says them, for number ranges and the built-in slot lists.

``num2words`` spells them (British-style "one hundred and five"); hyphens and commas go,
since synthesis and the spoken text carry words only.
"""

from __future__ import annotations

import re


def number_words(n: int) -> str:
    """``21`` -> ``"twenty one"``, ``105`` -> ``"one hundred and five"``."""
    from num2words import num2words

    return " ".join(re.sub(r"[-,]", " ", num2words(n)).split())
