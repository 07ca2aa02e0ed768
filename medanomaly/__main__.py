"""Run the command line with ``python -m medanomaly``."""

from medanomaly.cli import main

raise SystemExit(main())
