"""A training run's options, their per-mode defaults, and the reference ``train_opt.txt`` view of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

MODES = ("pix2pix", "cyclegan")


@dataclass(frozen=True)
class TrainOptions:
    """Everything a run needs. ``None`` fields take the mode's reference default (:func:`resolved`)."""

    dataroot: Path
    name: str
    mode: str = "pix2pix"
    checkpoints_dir: Path = Path("checkpoints")
    net_g: str | None = None
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    norm: str | None = None
    dropout: bool | None = None
    load_size: int | None = None
    crop_size: int = 256
    flip: bool = False
    batch_size: int = 1
    lr: float = 0.0002
    beta1: float = 0.5
    n_epochs: int = 100
    n_epochs_decay: int = 100
    max_iters: int = 0
    lambda_l1: float = 100.0
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    gan_mode: str | None = None
    pool_size: int | None = None
    save_epoch_freq: int = 5
    sample_every: int = 200
    device: str = "auto"
    threads: int = 0
    seed: int = 0
    resume: bool = False
    model_dir: Path | None = None
    pose_source: str = "keypoints"
    pose_style: str = "dp_segm"
    framing: str = "letterbox"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    keypoint_layout: str | None = None  # the dataset's keypoint layout, recorded in the card's [dataset]
    progress: bool = True
    command: str = ""
    #: Time budget in minutes (0: none). With no schedule flag given, the epochs are planned to fit
    #: it; in any case the run stops, saves and exports at its deadline (see :mod:`.recipe`).
    minutes: float = 0.0
    recipe: str = "auto"  # auto (from the hardware), small (128 px, a CPU), reference (256 px)
    #: The option names the user set; None (the Python API) means every field is as the caller wants,
    #: so neither the recipe nor the dataset's settings change any of them.
    given: frozenset[str] | None = None
    score_every: int = 1  # held-out scores and a kept grid every N epochs (and at the last, the picked, a stop)
    pick: str = "last"  # the epoch the card is made from: last, best (held-out PSNR) or a number

    @property
    def run_dir(self) -> Path:
        return Path(self.checkpoints_dir) / self.name

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay


def resolved(o: TrainOptions) -> TrainOptions:
    """Fill the mode defaults of the reference: pix2pix = unet_256, batch norm, dropout, vanilla GAN,
    no pool; cyclegan = resnet_9blocks, instance norm, no dropout, lsgan, pool 50."""
    if o.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    p2p = o.mode == "pix2pix"
    return replace(
        o,
        net_g=o.net_g or ("unet_256" if p2p else "resnet_9blocks"),
        norm=o.norm or ("batch" if p2p else "instance"),
        dropout=(p2p if o.dropout is None else o.dropout),
        load_size=o.load_size or o.crop_size,
        gan_mode=o.gan_mode or ("vanilla" if p2p else "lsgan"),
        pool_size=(0 if p2p else 50) if o.pool_size is None else o.pool_size,
    )


def reference_options(o: TrainOptions) -> dict[str, Any]:
    """The run as the reference's option names and value forms (for ``train_opt.txt``), so the
    generator stage and the reference's ``test.py`` rebuild the same networks."""
    return {
        "batch_size": o.batch_size, "beta1": o.beta1, "checkpoints_dir": str(o.checkpoints_dir),
        "continue_train": o.resume, "crop_size": o.crop_size, "dataroot": str(o.dataroot),
        "dataset_mode": "aligned" if o.mode == "pix2pix" else "unaligned", "direction": "AtoB",
        "display_id": -1, "epoch": "latest", "epoch_count": 1, "gan_mode": o.gan_mode, "gpu_ids": "-1",
        "init_gain": 0.02, "init_type": "normal", "input_nc": 3, "isTrain": True, "lambda_A": o.lambda_a,
        "lambda_B": o.lambda_b, "lambda_identity": o.lambda_identity, "lambda_L1": o.lambda_l1,
        "load_size": o.load_size, "lr": o.lr, "lr_decay_iters": 50, "lr_policy": "linear",
        "max_dataset_size": "inf", "model": o.mode if o.mode == "pix2pix" else "cycle_gan", "n_epochs": o.n_epochs,
        "n_epochs_decay": o.n_epochs_decay, "n_layers_D": o.n_layers_d, "name": o.name, "ndf": o.ndf,
        "netD": "basic" if o.n_layers_d == 3 else "n_layers", "netG": o.net_g, "ngf": o.ngf,
        "no_dropout": not o.dropout, "no_flip": not o.flip, "norm": o.norm, "num_threads": 0, "output_nc": 3,
        "phase": "train", "pool_size": o.pool_size, "preprocess": "resize_and_crop",
        "save_epoch_freq": o.save_epoch_freq, "serial_batches": False, "suffix": "", "verbose": False,
    }


def as_json(o: TrainOptions) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()}
    out["given"] = None if o.given is None else sorted(o.given)
    out["pad_color"] = list(o.pad_color)
    return out


def is_given(o: TrainOptions, name: str) -> bool:
    """Whether the user set option ``name`` (always, for the Python API)."""
    return o.given is None or name in o.given


def pick_epoch(pick: str) -> int | None:
    """The epoch number of a ``--pick`` value (None for last/best); ValueError for anything else."""
    if pick in ("last", "best"):
        return None
    if pick.isdigit() and int(pick) > 0:
        return int(pick)
    raise ValueError(f"--pick must be last, best or an epoch number, not {pick!r}")
