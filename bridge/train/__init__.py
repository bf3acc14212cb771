"""``pose2person train``: pix2pix and CycleGAN training with the reference's networks, losses and
schedule (pytorch-CycleGAN-and-pix2pix semantics, written for this project), writing checkpoints
the generator stage and the reference code both load.

Modules: ``options`` (what a run is, and its ``train_opt.txt``), ``data`` (paired and unpaired
images in memory), ``networks`` (PatchGAN discriminator, GAN loss, image pool), ``models``
(the pix2pix and CycleGAN steps), ``report`` (sample grid and loss plot PNGs, no matplotlib),
``loop`` (epochs, schedule, checkpoints, resume, model card), ``cli`` (flags -> options).
Everything here imports torch; nothing outside ``bridge.train`` imports this package eagerly.
"""
