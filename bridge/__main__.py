"""``python -m bridge`` is the ``pose2person`` command."""

import sys

from .cli import main

sys.exit(main())
