"""``python -m stylelib``: see :mod:`stylelib.cli`."""

import sys

from stylelib.cli import main

sys.exit(main())
