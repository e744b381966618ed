"""``python -m optbench`` runs the command line."""

import sys

from optbench.cli import main

sys.exit(main())
