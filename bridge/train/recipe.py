"""What to train in a time budget: the recipe (network, size, batch) from the hardware, and the
schedule (epochs or iterations) from a measured speed. Pure functions of given facts; no torch.

Recipes (flags the user gave always win; ``--recipe`` picks one by hand):

* ``small`` (a CPU): the shipped puppet's settings, 128 px ``unet_128``, ngf/ndf 16, instance norm,
  no dropout, batch 4. Measured on 2 cores: 38-41 images/s in a short run, 12.5 images/s over a
  whole run with augmentation on a loaded machine (docs/BENCHMARKS.md).
* ``reference`` (a GPU): pytorch-CycleGAN-and-pix2pix's defaults, 256 px (``unet_256``, ngf 64,
  batch norm, dropout, batch 1 for pix2pix; ``resnet_9blocks`` for CycleGAN).

Schedule: after a few warm-up steps give the seconds per step, the budget left after loading and
a reserve for the final save and export is split into whole epochs, half at the full learning rate
and half decaying (the reference ``linear`` policy); a budget shorter than one epoch runs until the
deadline. The loop also stops at the budget's deadline, whatever the plan said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

RECIPES = ("auto", "small", "reference")
DEFAULT_MINUTES = 30.0
#: Flags that set the schedule: given any of them, the budget only stops the run at its deadline.
SCHEDULE_FLAGS = ("n_epochs", "n_epochs_decay", "max_iters")

SMALL = {"pix2pix": {"net_g": "unet_128", "crop_size": 128, "ngf": 16, "ndf": 16, "norm": "instance",
                     "dropout": False, "batch_size": 4},
         "cyclegan": {"net_g": "resnet_6blocks", "crop_size": 128, "ngf": 16, "ndf": 16, "batch_size": 1}}
#: The reference's own defaults (``options.resolved`` fills the per-mode ones left None).
REFERENCE = {"pix2pix": {"net_g": None, "crop_size": 256, "ngf": 64, "ndf": 64, "norm": None, "dropout": None,
                         "batch_size": 1},
             "cyclegan": {"net_g": None, "crop_size": 256, "ngf": 64, "ndf": 64, "batch_size": 1}}


@dataclass(frozen=True)
class Hardware:
    """The facts a recipe depends on: ``device`` is ``cpu`` or ``cuda``."""

    device: str
    cpu_threads: int = 1
    gpu_name: str = ""

    def describe(self) -> str:
        return self.gpu_name or f"CPU, {self.cpu_threads} threads"


def choose_recipe(hw: Hardware, mode: str, recipe: str = "auto") -> tuple[str, dict[str, Any]]:
    """``(recipe name, option values)``: ``auto`` is ``reference`` on a GPU, ``small`` on a CPU."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
    name = recipe if recipe != "auto" else ("reference" if hw.device == "cuda" else "small")
    return name, dict((SMALL if name == "small" else REFERENCE)[mode])


def apply_recipe(values: Mapping[str, Any], given: frozenset[str] | set[str], recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the recipe's settings for every option the user did not give."""
    return {**values, **{k: v for k, v in recipe.items() if k not in given}}


@dataclass(frozen=True)
class Plan:
    """A schedule: ``n_epochs`` + ``n_epochs_decay`` epochs (``max_iters`` 0: the deadline ends a
    plan of less than one epoch), expected to take ``steps`` steps and ``eta_s`` seconds."""

    n_epochs: int
    n_epochs_decay: int
    max_iters: int
    steps: int
    eta_s: float
    note: str = ""

    @property
    def epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay


def plan_schedule(*, images: int, batch: int, step_s: float, epoch_overhead_s: float, budget_s: float,
                  spent_s: float, reserve_s: float) -> Plan:
    """The most whole epochs of ``images`` that fit what is left of ``budget_s`` (``spent_s`` used
    already, ``reserve_s`` kept for the final save and export), each costing its steps at
    ``step_s`` plus ``epoch_overhead_s`` (save, held-out scores, sample grid). Less than one epoch:
    as many steps as fit (at least one)."""
    per_epoch = max(1, math.ceil(images / batch))
    left = max(0.0, budget_s - spent_s - reserve_s)
    epoch_s = per_epoch * step_s + epoch_overhead_s
    epochs = int(left // epoch_s) if epoch_s > 0 else 1
    if epochs >= 1:
        n_epochs = math.ceil(epochs / 2)
        return Plan(n_epochs, epochs - n_epochs, 0, epochs * per_epoch, epochs * epoch_s)
    # Less than an epoch: no iteration limit, the deadline ends it (a measure taken on a busy machine
    # must not leave the rest of the budget unused).
    steps = max(1, min(per_epoch, int((left - epoch_overhead_s) // step_s) if step_s > 0 else 1))
    return Plan(1, 0, 0, steps, steps * step_s + epoch_overhead_s,
                note=f"the budget allows about {steps} of the {per_epoch} steps of one epoch: the deadline will "
                     "stop it; give more --minutes for a whole epoch")


def eta_of(*, images: int, batch: int, step_s: float, epoch_overhead_s: float, epochs: int, max_iters: int) -> float:
    """Seconds a given schedule should take at the measured speed (for flags that fix the schedule)."""
    per_epoch = max(1, math.ceil(images / batch))
    steps = epochs * per_epoch if not max_iters else min(max_iters, epochs * per_epoch)
    return steps * step_s + math.ceil(steps / per_epoch) * epoch_overhead_s
