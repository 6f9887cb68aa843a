"""intentd daemon: streaming speech-to-intent recognition."""

__version__ = "0.1.0"
