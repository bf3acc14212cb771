"""pose2person-bridge: a headless daemon that turns camera frames into pictures of a person.

The package, lowest layer first (docs/ARCHITECTURE.md; ``tests/test_layering.py`` keeps it so):

* ``config``, ``errors``, ``protocol``: the frozen configuration and every flag choice, the
  exceptions, the wire contract. ``osc``, ``shm``, ``client``: the client-facing API (stdlib +
  numpy; ``bridge.client`` loads inside TouchDesigner).
* ``util``: small helpers and stage timings. ``formats``: pixels, image files, paths, recordings.
* ``pose``: pose types, keypoints, pose images. ``cards``: model cards.
* ``densepose``, ``generator``: the torch models. ``stages``: the model catalog. ``engines``:
  where the model runs (local or Ray).
* ``daemon``: the daemon's core (dispatch, pipeline, jobs, monitor, recorder, discovery).
  ``transports``: OSC over UDP/TCP, HTTP, WebSocket. ``server``: puts them together.
* ``datasets``, ``train``, ``puppet``: making models. ``cli``: the ``pose2person`` command,
  one module per command (``python -m bridge``).

Only ``densepose``, ``generator``, ``train``, ``puppet`` and the card stages import torch; the
daemon core and the transports never do.
"""

__version__ = "0.1.0"
