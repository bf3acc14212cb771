"""The ``pose2person`` command line: :mod:`bridge.cli.main` builds the parser and dispatches;
one module per command (``serve``, ``discover``, ``send``, ``synth``, ``dataset``, ``train``,
``demo``, ``replay``, ``record``, ``models``, ``check``, ``run``, ``pose``), each with
``add_parser(subparsers)`` and ``run(args)``; flags shared by several commands are defined once
in :mod:`bridge.cli.options` (their choices and defaults in :mod:`bridge.config`).

May import anything in the package; nothing imports it (but ``bridge.__main__``). Building the
parser imports no torch, aiohttp, zeroconf or Ray: each command imports those only when it runs.
"""

from .main import main

__all__ = ["main"]
