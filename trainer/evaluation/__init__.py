"""``intentd-eval``: streaming evaluation of a model through the daemon's own pipeline.

Modules: :mod:`.snr` (noise and max-frame-energy SNR mixing), :mod:`.streams` (long test
streams with exact truth spans), :mod:`.channel` (8 kHz G.711 μ-law phone line),
:mod:`.replay` (in-memory source and capturing sink around the daemon's engine),
:mod:`.metrics`, :mod:`.report` (json / md / png) and :mod:`.cli`.
"""
