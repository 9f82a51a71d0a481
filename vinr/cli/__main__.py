"""``python -m vinr.cli``: the ``vinr`` command."""

import sys

from vinr.cli import main

sys.exit(main())
