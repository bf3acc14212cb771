"""``pose2person check MODEL IMAGES...``: does serving give what the training code's test path gives?

For each image it computes

* the **reference path**: ``test.py``'s transforms (RGB, PIL bicubic squash, ``[-1, 1]``), the
  network in fp32 eager on the CPU in the card's norm mode, ``tensor2im``'s truncation; then
  the card's mapping back to the image's size (the identity for an image already at the
  model's size with ``squash`` framing);
* the **serving path**: the image through a bridge daemon started for the check, over shared
  memory (``--transport shm``, the default) or the stage in-process (``inproc``), at the
  configured device, precision and acceleration;

and prints max and mean |difference| in 1/255 steps. Exit code 1 when any max exceeds
``--tolerance``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..cards import ModelCard
from ..config import resolve_pipeline
from ..errors import BridgeError, ModelLoadError
from ..stages import Catalog
from .options import add_log_level, add_model_options

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    check = sub.add_parser("check", help="fidelity: the reference test path vs the serving path, per image")
    check.add_argument("model")
    check.add_argument("images", nargs="+", metavar="IMAGE")
    check.add_argument("--tolerance", type=float, default=1.0,
                       help="largest max |difference| allowed, in 1/255 steps (default 1)")
    check.add_argument("--transport", choices=["shm", "inproc"], default="shm",
                       help="shm: through a bridge daemon started for the check (default); inproc: the stage only")
    add_log_level(check, "warning")
    add_model_options(check)


def reference_output(card: ModelCard, rgb: np.ndarray, norm_mode: str | None = None, seed: int = 0) -> np.ndarray:
    """The training code's test path for one RGB image, mapped back to the image's size."""
    from ..generator.checkpoint import load_generator, parse_train_opt
    from ..generator.engine import GeneratorEngine
    from ..generator.processing import frame_input, map_output, normalize, reference_resize, to_uint8
    from ..generator.stage import contract_from_card, spec_from_card

    weights = card.verify_weights()
    opt_path = weights.with_name("train_opt.txt")
    opts = parse_train_opt(opt_path) if opt_path.is_file() else None
    spec, sd = load_generator(weights, spec_from_card(card), opt_path if opts else None)
    engine = GeneratorEngine(spec, sd, device="cpu", precision="fp32", norm_mode=norm_mode or card.runtime.norm_mode,
                             accel="eager", seed=seed)
    contract = contract_from_card(card, opts)
    framed, fmap = frame_input(rgb, contract)
    y = engine.run(normalize(reference_resize(framed, contract))[None])[0]
    return map_output(to_uint8(y), fmap, contract)


def _serve_shm(args: argparse.Namespace, images: list[np.ndarray]) -> list[np.ndarray]:
    from ..client import BridgeClient
    from ..daemon.proc import DaemonProcess

    flags = ["--model", args.model, "--device", args.device, "--accel", args.accel]
    for name in ("precision", "norm_mode", "pose"):
        value = getattr(args, name)
        if value:
            flags += [f"--{name.replace('_', '-')}", value]
    for d in args.model_dirs or []:
        flags += ["--models-dir", d]
    outs: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="p2p-check-") as tmp, DaemonProcess(flags, shm_dir=Path(tmp)) as daemon:
        with BridgeClient("127.0.0.1", daemon.port, timeout=120.0) as client:
            for i, rgb in enumerate(images):
                h, w = rgb.shape[:2]
                session = client.open_shm(f"check{i}", w, h, "RGB8")
                out, _ = client.process_shm(session, rgb, i + 1, timeout=120.0)
                outs.append(out.copy())
                client.close_shm(session)
    return outs


def _serve_inproc(args: argparse.Namespace, images: list[np.ndarray]) -> list[np.ndarray]:
    from ..daemon.jobs import run_stage

    cfg = resolve_pipeline(model=args.model, model_dirs=args.model_dirs, device=args.device, precision=args.precision,
                           norm_mode=args.norm_mode, accel=args.accel, pose=args.pose,
                           max_people=getattr(args, "max_people", 1))
    stage = Catalog(cfg).load(args.model)
    return [run_stage(stage, rgb, "RGB8", 0, i) for i, rgb in enumerate(images)]


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    catalog = Catalog(resolve_pipeline(model_dirs=args.model_dirs))
    card = catalog.card(args.model)
    if card is None or card.kind != "generator":
        raise ModelLoadError(f"{args.model!r} is not a generator model card; see `pose2person models list`")
    pose = args.pose or card.input.pose_source
    if pose == "densepose":
        raise BridgeError("check compares the generator alone: run it with --pose image on pose images")
    images = []
    for name in args.images:
        try:
            with Image.open(name) as im:
                images.append(np.asarray(im.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise BridgeError(f"{name}: not a readable image ({exc})") from None
    served = (_serve_shm if args.transport == "shm" else _serve_inproc)(args, images)
    worst = 0.0
    print(f"{'image':<40} {'size':>11} {'max |diff|':>11} {'mean |diff|':>12}   (1/255 steps; "
          f"{args.transport}, {args.precision or card.runtime.precision}, norm {args.norm_mode or card.runtime.norm_mode})")
    for name, rgb, out in zip(args.images, images, served):
        ref = reference_output(card, rgb, args.norm_mode)
        diff = np.abs(ref.astype(np.int16) - out.astype(np.int16))
        worst = max(worst, float(diff.max()))
        print(f"{Path(name).name:<40} {rgb.shape[1]:>5}x{rgb.shape[0]:<5} {diff.max():>11d} {diff.mean():>12.4f}")
    ok = worst <= args.tolerance
    print(f"{'PASS' if ok else 'FAIL'}: worst max |diff| {worst:g} vs tolerance {args.tolerance:g}")
    return 0 if ok else 1
