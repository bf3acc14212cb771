"""``python -m bridge`` is the ``pose2person`` command."""

import sys

from .cli.main import main

sys.exit(main())
