"""The synthetic puppet: a procedural articulated body with random poses and dances (``skeleton``),
its person picture (``render``), the (pose image, person image) training pairs of
``pose2person synth`` (``synth``), and the trained puppet model's quality check (``eval``,
``python -m bridge.puppet.eval``).

May import: everything below the command line (:mod:`bridge.pose`, :mod:`bridge.datasets`,
:mod:`bridge.generator` and :mod:`bridge.train` lazily, where torch is needed). Never the daemon,
the transports or :mod:`bridge.cli`.
"""
