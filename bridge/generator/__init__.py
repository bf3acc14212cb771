"""The generator stage: pix2pix / CycleGAN generators from pytorch-CycleGAN-and-pix2pix, run
exactly as that code's test path does, fast, with hot swap.

Modules (torch is imported only by ``nets``, ``checkpoint``, ``engine`` and ``stage``):

* ``nets``: the ResNet and U-Net generators, ``state_dict``-compatible with the reference.
* ``checkpoint``: safe loading, key remapping, architecture detection, ``train_opt.txt``.
* ``processing``: the reference pre/post-processing and the framing of camera frames (numpy + PIL).
* ``engine``: device, precision, norm/dropout modes, warm-up, batching of one network.
* ``stage``: the pipeline stage that turns a client frame into a generated frame.

See docs/GENERATOR.md for the exact semantics and their measured fidelity.

May import: the base, :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`,
:mod:`bridge.cards`, :mod:`bridge.densepose`. Never the stages catalog, the daemon or anything above.
"""
