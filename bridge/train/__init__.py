"""``pose2person train``: pix2pix and CycleGAN training with the reference's networks, losses and
schedule (pytorch-CycleGAN-and-pix2pix semantics, written for this project), writing checkpoints
the generator stage and the reference code both load.

Modules: ``options`` (what a run is, and its ``train_opt.txt``), ``data`` (paired and unpaired
images in memory), ``networks`` (PatchGAN discriminator, GAN loss, image pool), ``models``
(the pix2pix and CycleGAN steps), ``report`` (sample grid and loss plot PNGs, no matplotlib),
``recipe`` (network and epochs from the hardware and a time budget), ``settings`` (the dataset's
recorded framing, pose source ... merged with the flags), ``quality`` (PSNR, SSIM, baselines),
``heldout`` (per-epoch held-out scores and sample grids), ``export`` (the card, the ``--model-dir``
copy and its registration), ``loop`` (epochs, schedule, stopping, checkpoints, resume, ``--pick``);
the flags are :mod:`bridge.cli.train`. ``options``, ``recipe``, ``settings``, ``quality``, ``heldout``
and ``report`` do not import torch; nothing outside ``bridge.train`` imports the rest eagerly.

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`, :mod:`bridge.generator`. Never the daemon, the transports or the command line.
"""
