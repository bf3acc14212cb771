"""``serve``'s engine flags: ``--engine local|ray`` and the Ray Serve replica options (docs/SCALING.md).

Parsing only; :func:`bridge.config.resolve_engine` validates, :mod:`bridge.engines` runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .config import ENGINE_CHOICES


def _optional_int(raw: str | None) -> int | None:
    return int(raw) if raw not in (None, "") else None


def add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine (where the model runs; docs/SCALING.md)")
    g.add_argument("--engine", choices=ENGINE_CHOICES, default=os.environ.get("POSE2PERSON_ENGINE", "local"),
                   help="local: the daemon's own model worker (default); ray: Ray Serve replicas, this daemon "
                        "stays the front end")
    g.add_argument("--ray-address", default=os.environ.get("POSE2PERSON_RAY_ADDRESS") or None, metavar="ADDR",
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
