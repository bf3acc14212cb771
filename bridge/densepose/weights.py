"""Downloading the official DensePose model-zoo weights (stdlib only; no torch).

``fetch_zoo_weights("densepose_rcnn_R_50_FPN_s1x")`` downloads
``https://dl.fbaipublicfiles.com/densepose/densepose_rcnn_R_50_FPN_s1x/165712039/model_final_162be9.pkl``
to ``<cache_dir>/<config name>/model_final_162be9.pkl`` and returns that path. ``cache_dir``
defaults to the project's ``models/`` folder, so the file lands beside the shipped model card
(``models/<config name>/card.toml``), which is where ``serve --pose densepose`` looks for it
(``*.pkl`` there is git-ignored: the weights are CC BY-SA 3.0 and never bundled).

* Progress on stderr (:class:`bridge.util.progress.ProgressBar`, in MB).
* Resumes: bytes go to ``<file>.part``; a later call asks for the rest with an HTTP ``Range``
  header (a server that ignores it sends everything again, which is handled).
* Checks: the byte count against the server's ``Content-Length`` / ``Content-Range`` total, and
  the md5 of the whole file against the 6-hex prefix in its name (detectron2's MODEL_ZOO.md: "any
  model on this page contains its md5 prefix in its file name"). A mismatch deletes the file.
* No network: fails at once (connect timeout ``timeout`` s) with the exact URL and the path to
  put a hand-downloaded file at.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ModelLoadError
from .configs import get_config

log = logging.getLogger(__name__)

ZOO_BASE_URL = "https://dl.fbaipublicfiles.com/densepose"
CHUNK = 1 << 20  # bytes per read
_MD5_IN_NAME = re.compile(r"_([0-9a-f]{6})\.[A-Za-z0-9]+$")


def default_cache_dir() -> Path:
    """The project's ``models/`` folder (where the shipped DensePose cards live)."""
    from ..cards import shipped_models_dir

    return shipped_models_dir()


def zoo_url(name: str, base_url: str = ZOO_BASE_URL) -> str:
    cfg = get_config(name)
    return f"{base_url.rstrip('/')}/{cfg.name}/{cfg.zoo_path}"


def zoo_destination(name: str, cache_dir: Path | None = None) -> Path:
    """Where :func:`fetch_zoo_weights` puts (and finds) ``name``'s file."""
    cfg = get_config(name)
    return Path(cache_dir or default_cache_dir()).expanduser() / cfg.name / cfg.zoo_path.rsplit("/", 1)[1]


def fetch_zoo_weights(name: str, cache_dir: Path | None = None, progress: bool = True, *,
                      base_url: str = ZOO_BASE_URL, timeout: float = 10.0) -> Path:
    """The local path of config ``name``'s model-zoo weights, downloading them if needed.

    An existing file whose md5 matches its name is returned without network access.
    Raises ModelLoadError (no network, HTTP error, size or checksum mismatch) with the URL and
    the destination path in the message.
    """
    url = zoo_url(name, base_url)
    dest = zoo_destination(name, cache_dir)
    return fetch_url(url, dest, progress=progress, timeout=timeout)


def md5_prefix_of(name: str) -> str | None:
    """The 6-hex md5 prefix in a model-zoo file name (``model_final_162be9.pkl`` -> ``162be9``)."""
    m = _MD5_IN_NAME.search(name)
    return m.group(1) if m else None


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_md5(path: Path, expected: str | None) -> bool:
    return expected is None or _md5(path).startswith(expected)


def fetch_url(url: str, dest: Path, progress: bool = True, timeout: float = 10.0) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified as described in the module docstring)."""
    expected_md5 = md5_prefix_of(dest.name)
    manual = f"download {url} by hand and put it at {dest}"
    if dest.is_file():
        if _check_md5(dest, expected_md5):
            log.info("%s is already downloaded", dest)
            return dest
        log.warning("%s does not match the md5 prefix %s in its name; downloading it again", dest, expected_md5)
        dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"cannot create {dest.parent} ({exc.strerror}); {manual}") from None
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pose2person-bridge"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL from the config table)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete: verify it below
            return _finish(part, dest, expected_md5, have, manual)
        raise ModelLoadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {manual}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelLoadError(f"cannot download {url} (no network? {reason}); {manual}") from None
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:
            log.info("the server ignored the resume request; downloading %s from the start", dest.name)
            have = 0
        total = _total_size(response.headers, have, status)
        from ..util.progress import ProgressBar

        bar = ProgressBar(max(1, (total or 0) // CHUNK), f"{dest.name} (MB)", enabled=progress, every_s=5.0)
        shown = have // CHUNK  # whole MB on the bar
        bar.update(shown)
        try:
            with open(part, "ab" if have else "wb") as out:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    have += len(chunk)
                    if have // CHUNK > shown:
                        bar.update(have // CHUNK - shown)
                        shown = have // CHUNK
        except (OSError, socket.timeout) as exc:
            raise ModelLoadError(f"download of {url} interrupted after {have} bytes ({exc}); run the same "
                                 f"command again to resume, or {manual}") from None
        finally:
            bar.close()
    if total is not None and have != total:
        raise ModelLoadError(f"download of {url} stopped at {have} of {total} bytes; run the same command "
                             f"again to resume, or {manual}")
    return _finish(part, dest, expected_md5, have, manual)


def _total_size(headers: object, have: int, status: int) -> int | None:
    get = getattr(headers, "get")
    content_range = get("Content-Range")
    if status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = get("Content-Length")
    if length and length.isdigit():
        return int(length) + (have if status == 206 else 0)
    return None


def _finish(part: Path, dest: Path, expected_md5: str | None, size: int, manual: str) -> Path:
    if not _check_md5(part, expected_md5):
        part.unlink()
        raise ModelLoadError(f"{dest.name}: {size} bytes downloaded but the md5 does not start with "
                             f"{expected_md5} (corrupt download, deleted); try again, or {manual}")
    os.replace(part, dest)
    log.info("downloaded %s (%d bytes)", dest, size)
    return dest
