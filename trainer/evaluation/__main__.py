"""``python -m intentd.trainer.evaluation`` runs ``intentd-eval``."""

import sys

from intentd.trainer.evaluation.cli import main

sys.exit(main())
