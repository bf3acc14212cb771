"""``pose2person train``: pix2pix and CycleGAN training with the reference's networks, losses and
schedule (pytorch-CycleGAN-and-pix2pix semantics, written for this project), writing checkpoints
the generator stage and the reference code both load.

Modules: ``options`` (what a run is, and its ``train_opt.txt``), ``data`` (paired and unpaired
images in memory), ``networks`` (PatchGAN discriminator, GAN loss, image pool), ``models``
(the pix2pix and CycleGAN steps), ``report`` (sample grid and loss plot PNGs, no matplotlib),
``loop`` (epochs, schedule, checkpoints, resume, model card); the flags are :mod:`bridge.cli.train`.
Everything but ``options`` imports torch; nothing outside ``bridge.train`` imports the rest eagerly.

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`, :mod:`bridge.generator`. Never the daemon, the transports or the command line.
"""
