"""Real photos of people for the tracker tests, taken from pinned wheels on PyPI.

No test photo is committed: scikit-image ships NASA's ``astronaut`` (public domain) and
matplotlib ships ``grace_hopper.jpg`` inside their wheels. :func:`photo` downloads the one pinned
wheel with ``pip download --require-hashes`` the first time, checks the member's sha256, and
keeps the file in ``test-artifacts/photos/`` (git-ignored). Without the package index the tests
that need a photo skip (fail under CI=true).

Hand-checked landmark positions (pixels, read off the pictures by eye; tolerances in the tests):
see :data:`EXPECTED`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clienttools import missing
from conftest import REPO

CACHE = REPO / "test-artifacts" / "photos"


@dataclass(frozen=True)
class PhotoPin:
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    platform: str = "manylinux_2_28_x86_64"


PHOTOS = {
    "astronaut": PhotoPin("scikit-image", "0.26.0",
                          "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                          "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
                          "skimage/data/astronaut.png",
                          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    "grace_hopper": PhotoPin("matplotlib", "3.11.2",
                             "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
                             "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
                             "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                             "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
                             "manylinux2014_x86_64"),
}

#: landmark name -> (x, y) in pixels of the original photo, checked by eye.
EXPECTED: dict[str, dict[str, tuple[float, float]]] = {
    "astronaut": {  # 512x512, upper body, facing the camera
        "nose": (221, 128), "right_eye": (201, 103), "left_eye": (247, 110),
        "mouth_right": (209, 148), "mouth_left": (236, 152),
        "right_shoulder": (112, 240), "left_shoulder": (305, 256),
    },
    "grace_hopper": {  # 512x600, upper body, facing the camera, glasses
        "nose": (267, 232), "right_eye": (229, 193), "left_eye": (304, 188),
        "mouth_right": (244, 270), "mouth_left": (297, 266),
        "right_shoulder": (95, 425), "left_shoulder": (455, 425),
    },
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo_path(name: str) -> Path:
    """The photo's file, downloading its wheel once; skips (fails in CI) without the index."""
    pin = PHOTOS[name]
    target = CACHE / Path(pin.member).name
    if target.is_file() and _sha(target.read_bytes()) == pin.sha256:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "req.txt"
        req.write_text(f"{pin.package}=={pin.version} --hash=sha256:{pin.wheel_sha256}\n")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--require-hashes", "--platform", pin.platform, "--python-version", "3.11",
                               "-r", str(req), "-d", tmp, "--quiet", "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=600)
        wheel = Path(tmp) / pin.wheel
        if proc.returncode != 0 or not wheel.is_file():
            missing(f"could not download {pin.wheel} for the test photo {name}: {proc.stderr.strip()[-300:]}")
        data = zipfile.ZipFile(wheel).read(pin.member)
    if _sha(data) != pin.sha256:
        raise AssertionError(f"{pin.member} in {pin.wheel} does not match its pinned sha256")
    target.write_bytes(data)
    return target


def photo_bgr(name: str) -> np.ndarray:
    import cv2

    image = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image
