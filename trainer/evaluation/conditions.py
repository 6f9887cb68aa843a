"""The conditions an evaluation runs in: ``clean`` and SNRs in dB (``--snrs``)."""

from __future__ import annotations

from intentd.daemon.errors import ConfigError

CLEAN = "clean"  # the condition without added noise


def parse_conditions(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == CLEAN:
            out.append(CLEAN)
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--snrs: {part!r} is neither 'clean' nor a number of dB; "
                              "use e.g. clean,24,18,12,9,6") from None
        out.append(f"{value:g}")
    if not out:
        raise ConfigError("--snrs is empty; use e.g. clean,24,18,12,9,6")
    return tuple(dict.fromkeys(out))
