"""intentd daemon: streaming speech-to-intent recognition.

The stages live in subpackages: ``audio`` (sources to utterances), ``model`` (backends and the
compact model), ``engine`` (per-stream stages, the shared model worker, the supervisor) and
``output`` (events and sinks). Importing this package imports nothing else, so light entry
points (``intentd --help``, config errors) stay fast.
"""

__version__ = "0.1.0"
