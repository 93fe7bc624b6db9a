"""``python -m runtime``: the same command line as ``warden``."""

from runtime.cli import main

raise SystemExit(main())
