"""``python -m daemon`` runs the intentd daemon."""

import sys

from daemon.cli import main

sys.exit(main())
