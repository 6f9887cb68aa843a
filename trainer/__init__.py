"""intentd trainer: synthetic speech data and model fine-tuning.

``import trainer`` makes the Auto classes know the compact model (through ``daemon``).
"""

import daemon  # noqa: F401
