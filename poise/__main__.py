"""``python -m poise``: the same command line as ``poise``, for an environment without the script on PATH."""

import sys

from poise.cli import main

sys.exit(main())
