"""``python -m intentd.daemon`` runs the intentd daemon."""

import sys

from intentd.daemon.cli import main

sys.exit(main())
