"""``python -m dlgm``: see ``dlgm.cli``."""

import sys

from .cli import main

sys.exit(main())
