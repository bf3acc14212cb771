"""Flags shared by several commands, each defined once: the log level, the bridge address
(``--to``), the model options (``serve``, ``check``, ``run``) and ``serve``'s engine options.
Parsing only; :mod:`bridge.config` validates (and holds the choices and defaults).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..config import (
    ACCEL_CHOICES,
    DEFAULT_DENSEPOSE_MODEL,
    DEFAULT_OSC_PORT,
    ENGINE_CHOICES,
    LOG_LEVELS,
    NORM_MODE_CHOICES,
    POSE_CHOICES,
    PRECISION_CHOICES,
)

DEFAULT_TO = f"127.0.0.1:{DEFAULT_OSC_PORT}"  # a running bridge on this machine


def env(name: str, default: str) -> str:
    """``$POSE2PERSON_<name>``, else ``default``."""
    return os.environ.get(f"POSE2PERSON_{name}", default)


def add_log_level(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--log-level", default=default, choices=LOG_LEVELS)


def add_to(p: argparse.ArgumentParser, help: str | None = None) -> None:  # noqa: A002 - argparse's name
    """``--to HOST:PORT``: the running bridge a client command talks to."""
    p.add_argument("--to", default=DEFAULT_TO, metavar="HOST:PORT", help=help)


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
                   help="pose source: image (the frame is the pose image), densepose, keypoints, tracker-densepose (the camera "
                        "tracker's keypoints drawn as DensePose parts shaped by the person mask: a CPU approximation "
                        "of densepose, docs/TRACKER.md) (default: the card's)")
    g.add_argument("--densepose-model", default=DEFAULT_DENSEPOSE_MODEL,
                   help="the DensePose model card --pose densepose uses")
    g.add_argument("--memory-budget-mb", type=int, default=4096,
                   help="weights of recently used models kept loaded for instant switches (default 4096)")
    g.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads for the model (default 0 = one per core); on a 2-core machine that also "
                        "runs the sketch, 1 often gives lower latency (docs/BENCHMARKS.md)")
    g.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="generate up to N clients' waiting frames as one batch (default 1; pays on GPUs, "
                        "see docs/BENCHMARKS.md)")
    g.add_argument("--max-people", type=int, default=1, metavar="N",
                   help="people the camera tracker follows in each client's frames, 1..8 (default 1: one landmark "
                        "run per person per frame, sized for a CPU; a client may ask for its own with "
                        "/pose2person/people; docs/TRACKER.md)")
    g.add_argument("--pipeline-depth", type=_depth, default=0, metavar="auto|D",
                   help="frames of one client in flight at once, so pose and generator overlap on consecutive "
                        "frames (default auto: 2 for a DensePose generator on a GPU or where the camera tracker poses camera "
                        "frames, else 1; docs/GENERATOR.md)")


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
            "max_batch": args.max_batch, "pipeline_depth": args.pipeline_depth, "threads": args.threads,
            "max_people": args.max_people}


def _optional_int(raw: str | None) -> int | None:
    return int(raw) if raw not in (None, "") else None


def add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine (where the model runs; docs/SCALING.md)")
    g.add_argument("--engine", choices=ENGINE_CHOICES, default=env("ENGINE", "local"),
                   help="local: the daemon's own model worker (default); ray: Ray Serve replicas, this daemon "
                        "stays the front end")
    g.add_argument("--ray-address", default=env("RAY_ADDRESS", "") or None, metavar="ADDR",
                   help="Ray cluster to join (e.g. 10.0.0.5:6379, as printed by `ray start --head`); default: "
                        "start a private local cluster with the daemon")
    g.add_argument("--ray-app", default="pose2person", metavar="NAME",
                   help="Serve application name, one per bridge sharing a cluster (default pose2person)")
    g.add_argument("--replicas", type=int, default=1, help="model replicas at start (default 1)")
    g.add_argument("--min-replicas", type=int, default=None,
                   help="autoscaling lower bound (with --max-replicas; default: a fixed --replicas)")
    g.add_argument("--max-replicas", type=int, default=None, help="autoscaling upper bound")
    g.add_argument("--gpus-per-replica", type=float, default=0.0, dest="num_gpus",
                   help="GPUs reserved per replica (fractions share a GPU; default 0)")
    g.add_argument("--cpus-per-replica", type=float, default=1.0, dest="num_cpus",
                   help="CPUs reserved per replica (default 1)")
    g.add_argument("--ray-local-cpus", type=_optional_int, default=None, dest="local_cpus",
                   help="CPUs the private local cluster offers (default: all cores)")


def engine_option_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"engine": args.engine, "ray_address": args.ray_address, "ray_app": args.ray_app,
            "replicas": args.replicas, "min_replicas": args.min_replicas, "max_replicas": args.max_replicas,
            "num_gpus": args.num_gpus, "num_cpus": args.num_cpus, "local_cpus": args.local_cpus}
