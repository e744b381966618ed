"""``python -m optbench`` runs the command line."""

import sys

from optbench.cli.main import main

sys.exit(main())
