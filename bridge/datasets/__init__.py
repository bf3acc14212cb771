"""Training sets: the pytorch-CycleGAN-and-pix2pix folder layouts (``layout``) and
``pose2person dataset build`` (``build``: video and image frames -> pose images + person images).

May import: the top-level base modules, :mod:`bridge.util`, :mod:`bridge.formats`,
:mod:`bridge.pose`, :mod:`bridge.cards` and :mod:`bridge.densepose` (lazily: torch only when
DensePose is the pose source). Never the daemon, the transports or :mod:`bridge.cli`.
"""
