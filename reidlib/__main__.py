"""``python -m reidlib``: see :mod:`reidlib.cli`."""

import sys

from reidlib.cli import main

sys.exit(main())
