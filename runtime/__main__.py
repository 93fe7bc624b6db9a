"""``python -m runtime`` runs the ``warden`` command line."""

import sys

from runtime.cli import main

sys.exit(main())
