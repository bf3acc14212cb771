"""CLI parsers for the model side: ``models list|show|import|fetch``, ``check``, ``run``, and the
model options ``serve`` shares with them. Parsing only; each command's work is in its own module."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from .config import ACCEL_CHOICES, NORM_MODE_CHOICES, POSE_CHOICES, PRECISION_CHOICES

LEVELS = ["debug", "info", "warning", "error"]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Flags that choose how model cards run (shared by serve, run and check)."""
    g = p.add_argument_group("model options (override the model card)")
    g.add_argument("--models-dir", action="append", metavar="DIR", dest="model_dirs",
                   help="also look for model cards here (repeatable; before models/ and the user models dir)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda[:N] or mps")
    g.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="fp32 (exact, default), fp16 (CUDA) or bf16: faster, with a measured deviation")
    g.add_argument("--norm-mode", choices=NORM_MODE_CHOICES, default=None,
                   help="pix2pix BatchNorm/dropout at inference: stable (default: frame statistics, no dropout), "
                        "reference (test.py: frame statistics, seeded dropout), eval (running statistics)")
    g.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                   help="execution: auto (CUDA graphs on CUDA, eager elsewhere), eager, onednn, compile, cuda-graph")
    g.add_argument("--pose", choices=POSE_CHOICES, default=None,
                   help="pose source: image (the frame is the pose image), densepose, keypoints (default: the card's)")
    g.add_argument("--densepose-model", default="densepose_rcnn_R_50_FPN_s1x",
                   help="the DensePose model card --pose densepose uses")
    g.add_argument("--memory-budget-mb", type=int, default=4096,
                   help="weights of recently used models kept loaded for instant switches (default 4096)")
    g.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads for the model (default 0 = one per core); on a 2-core machine that also "
                        "runs the sketch, 1 often gives lower latency (docs/BENCHMARKS.md)")
    g.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="generate up to N clients' waiting frames as one batch (default 1; pays on GPUs, "
                        "see docs/BENCHMARKS.md)")
    g.add_argument("--pipeline-depth", type=_depth, default=0, metavar="auto|D",
                   help="frames of one client in flight at once, so pose and generator overlap on consecutive "
                        "frames (default auto: 2 for a DensePose generator on a GPU, else 1; docs/GENERATOR.md)")


def _depth(text: str) -> int:
    if text == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, not {text!r}") from None


def model_option_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"model_dirs": args.model_dirs, "device": args.device, "precision": args.precision,
            "norm_mode": args.norm_mode, "accel": args.accel, "pose": args.pose,
            "densepose_model": args.densepose_model, "memory_budget_mb": args.memory_budget_mb,
            "max_batch": args.max_batch, "pipeline_depth": args.pipeline_depth, "threads": args.threads}


def add_parsers(sub: Any) -> None:
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
    imp.add_argument("--epoch", default="latest", help="checkpoint epoch prefix (default latest)")
    imp.add_argument("--dest", default=None, metavar="DIR", help="models directory to write to "
                     "(default $POSE2PERSON_MODELS or ~/.local/share/pose2person/models)")
    imp.add_argument("--pose-source", choices=POSE_CHOICES, default="image")
    imp.add_argument("--pose-style", default="dp_segm", help="renderer that made the training poses")
    imp.add_argument("--framing", choices=["squash", "center-crop", "letterbox"], default="squash")
    imp.add_argument("--pad-color", default="255,255,255", help="letterbox colour R,G,B (default white)")
    imp.add_argument("--link", action="store_true", help="point the card at the weights instead of copying them")
    imp.add_argument("--force", action="store_true", help="replace an existing card of that name")
    fetch = msub.add_parser("fetch", help="download a model card's weights (e.g. the DensePose model zoo)")
    fetch.add_argument("name")
    fetch.add_argument("--cache-dir", default=None)
    fetch.add_argument("--no-progress", action="store_true")
    for p in (models, lst, show, imp, fetch):
        p.add_argument("--log-level", default="info", choices=LEVELS)

    check = sub.add_parser("check", help="fidelity: the reference test path vs the serving path, per image")
    check.add_argument("model")
    check.add_argument("images", nargs="+", metavar="IMAGE")
    check.add_argument("--tolerance", type=float, default=1.0,
                       help="largest max |difference| allowed, in 1/255 steps (default 1)")
    check.add_argument("--transport", choices=["shm", "inproc"], default="shm",
                       help="shm: through a bridge daemon started for the check (default); inproc: the stage only")
    check.add_argument("--log-level", default="warning", choices=LEVELS)
    add_model_options(check)

    run = sub.add_parser("run", help="process images, folders and videos offline through a model")
    run.add_argument("inputs", nargs="+", metavar="INPUT")
    run.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="folder for results (images as PNG, videos as MP4), or a .mp4 file for one video")
    run.add_argument("--model", required=True)
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--log-level", default="warning", choices=LEVELS)
    add_model_options(run)


def _models(args: argparse.Namespace) -> int:
    from .models_cmd import run_models

    return run_models(args)


def _check(args: argparse.Namespace) -> int:
    from .check_cmd import run_check

    return run_check(args)


def _run(args: argparse.Namespace) -> int:
    from .run_cmd import run_offline

    return run_offline(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"models": _models, "check": _check, "run": _run}
