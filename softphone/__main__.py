"""``python -m softphone`` runs the CLI."""

import sys

from softphone.cli import main

sys.exit(main())
