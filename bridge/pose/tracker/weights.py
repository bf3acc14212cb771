"""BlazePose's model files: where they live, their pinned sha256, and fetching them from PyPI.

The files are members of Google's official ``mediapipe==0.10.21`` wheel on PyPI (Apache-2.0;
the same bytes in every platform's wheel). ``pose2person models fetch blazepose`` downloads one
pinned wheel with ``pip download --require-hashes`` (any host can download the Linux wheel: it is
only unzipped, never installed), checks the wheel's sha256, extracts the members, checks each
member's size and sha256, and writes them atomically beside the card (``models/blazepose/``,
git-ignored). ``--wheel PATH`` uses a wheel already on disk (an offline machine).

Every pin is in the card (``models/blazepose/card.toml``, table ``[tracker]``), read here; the
loader checks size and sha256 again before a file is used, so a replaced file never runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...errors import ModelLoadError

log = logging.getLogger(__name__)

TRACKER_CARD = "blazepose"
ROLES = ("detector", "landmarks", "segmentation")


@dataclass(frozen=True)
class TrackerFile:
    """One model file: its role, name on disk, member path inside the wheel, size and sha256."""

    role: str
    file: str
    member: str
    size: int
    sha256: str


@dataclass(frozen=True)
class TrackerPins:
    """The ``[tracker]`` table of the card: the wheel and the files taken from it."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    platform: str
    python_version: str
    files: tuple[TrackerFile, ...]

    def file(self, role: str) -> TrackerFile:
        for f in self.files:
            if f.role == role:
                return f
        raise ModelLoadError(f"the tracker card names no {role} file")


def parse_pins(table: Mapping[str, Any], where: str = "card.toml [tracker]") -> TrackerPins:
    """The ``[tracker]`` table -> :class:`TrackerPins`; a clear error for anything missing."""
    try:
        files = tuple(TrackerFile(role=str(role), file=str(spec["file"]), member=str(spec["member"]),
                                  size=int(spec["size"]), sha256=str(spec["sha256"]).lower())
                      for role, spec in dict(table["files"]).items())
        pins = TrackerPins(str(table["package"]), str(table["version"]), str(table["wheel"]),
                           str(table["wheel_sha256"]).lower(), str(table["platform"]),
                           str(table["python_version"]), files)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{where}: incomplete ({exc})") from exc
    for f in files:
        if f.role not in ROLES or "/" in f.file or "\\" in f.file or f.file.startswith("."):
            raise ModelLoadError(f"{where}: bad file entry {f.role!r} -> {f.file!r}")
        if len(f.sha256) != 64:
            raise ModelLoadError(f"{where}: {f.role} sha256 must be 64 hex digits")
    return pins


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_files(pins: TrackerPins, folder: Path, roles: tuple[str, ...] = ("detector", "landmarks")) -> list[str]:
    """Names of the files for ``roles`` not present in ``folder`` (cheap: no hashing)."""
    return [pins.file(r).file for r in roles if not (folder / pins.file(r).file).is_file()]


def verified_path(pins: TrackerPins, folder: Path, role: str) -> Path:
    """The path of ``role``'s file after checking its size and sha256 against the pins."""
    spec = pins.file(role)
    path = folder / spec.file
    if not path.is_file():
        raise ModelLoadError(f"tracker file {path} is missing: run `pose2person models fetch {TRACKER_CARD}`")
    if path.stat().st_size != spec.size or _sha256(path) != spec.sha256:
        raise ModelLoadError(f"tracker file {path} does not match its pinned sha256 (corrupt or replaced): "
                             f"delete it and run `pose2person models fetch {TRACKER_CARD}`")
    return path


def download_wheel(pins: TrackerPins, dest: Path) -> Path:
    """``pip download`` the pinned wheel into ``dest`` with ``--require-hashes``; its path."""
    requirement = dest / "requirements.txt"
    requirement.write_text(f"{pins.package}=={pins.version} --hash=sha256:{pins.wheel_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--platform", pins.platform, "--python-version", pins.python_version, "-r", str(requirement),
           "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    log.info("downloading %s==%s (%s) from the package index", pins.package, pins.version, pins.wheel)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    wheel = dest / pins.wheel
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelLoadError(f"could not download {pins.wheel} with pip: {' / '.join(tail) or 'no output'}")
    return wheel


def extract_files(pins: TrackerPins, wheel: Path, folder: Path) -> list[Path]:
    """Check ``wheel`` against its pin, then write each pinned member into ``folder`` atomically."""
    if _sha256(wheel) != pins.wheel_sha256:
        raise ModelLoadError(f"{wheel} does not match the pinned wheel sha256 {pins.wheel_sha256[:12]}…")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{wheel} is not a wheel (zip): {exc}") from exc
    with archive:
        for spec in pins.files:
            try:
                info = archive.getinfo(spec.member)
            except KeyError as exc:
                raise ModelLoadError(f"{wheel.name} has no member {spec.member}") from exc
            if info.file_size != spec.size:
                raise ModelLoadError(f"{spec.member} is {info.file_size} bytes, pinned {spec.size}")
            data = archive.read(info)
            if hashlib.sha256(data).hexdigest() != spec.sha256:
                raise ModelLoadError(f"{spec.member} does not match its pinned sha256")
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{spec.file}.", suffix=".part")
            os.chmod(tmp, 0o644)  # model files, not secrets: readable like the rest of the checkout
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, folder / spec.file)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(folder / spec.file)
    return written


def fetch(pins: TrackerPins, folder: Path, wheel: Path | None = None) -> list[Path]:
    """Make every pinned file present and verified in ``folder``; the paths.

    Files already present with the right sha256 are kept (no download). ``wheel``: use this
    wheel instead of downloading.
    """
    ok = True
    for spec in pins.files:
        try:
            verified_path(pins, folder, spec.role)
        except ModelLoadError:
            ok = False
    if ok:
        log.info("tracker files already present and verified in %s", folder)
        return [folder / f.file for f in pins.files]
    if wheel is not None:
        return extract_files(pins, wheel, folder)
    with tempfile.TemporaryDirectory(prefix="pose2person-wheel-") as tmp:
        return extract_files(pins, download_wheel(pins, Path(tmp)), folder)
