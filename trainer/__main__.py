"""``python -m intentd.trainer`` runs ``intentd-train``."""

import sys

from intentd.trainer.cli import main

sys.exit(main())
