"""Allowed-root checks for file-path frames: resolve first, then check, never the reverse.

This is the *check*, made when a message arrives. It is not what protects the file when the worker
uses it later: by then a folder or the file may have been swapped for a link, a FIFO or a device.
The *use* goes through :mod:`bridge.formats.safefs`, which walks from the root again without
following links; the paths returned here are what it walks.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ClientError

DEFAULT_OUTPUT_SUFFIX = ".pose2person.png"


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _expand(raw: str, frame_id: int) -> Path:
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # "~nosuchuser/...": no home directory to expand to
        raise ClientError("path_not_allowed", f"cannot expand {raw}", frame_id) from None


def resolve_input(raw: str, roots: tuple[Path, ...], frame_id: int) -> Path:
    """Resolve ``raw`` (symlinks and ``..`` included) and require it inside a root and a regular file."""
    if not raw or "\x00" in raw:
        raise ClientError("bad_arguments", "empty input path", frame_id)
    candidate = _expand(raw, frame_id)
    if not candidate.is_absolute():
        raise ClientError("path_not_allowed", f"input path must be absolute: {raw}", frame_id)
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
        raise ClientError("path_not_allowed", f"cannot resolve {raw}: {exc}", frame_id) from None
    if not _inside(resolved, roots):
        raise ClientError("path_not_allowed", f"{raw} is outside the allowed roots", frame_id)
    try:
        is_file = resolved.is_file()
    except OSError as exc:  # e.g. ENAMETOOLONG, EACCES: pathlib re-raises those
        raise ClientError("file_not_found", f"cannot access {raw}: {exc.strerror}", frame_id) from None
    if not is_file:
        raise ClientError("file_not_found", f"no such file: {raw}", frame_id)
    return resolved


def resolve_output(raw: str | None, input_path: Path, roots: tuple[Path, ...], frame_id: int) -> Path:
    """The output path: ``raw`` or ``<input stem>.pose2person.png`` beside the input.

    The parent directory is resolved (the file may not exist yet) and must lie inside a
    root; an existing output that is a symlink is refused so a rename cannot be redirected.
    """
    if raw:
        if "\x00" in raw:
            raise ClientError("bad_arguments", "output path contains a NUL character", frame_id)
        candidate = _expand(raw, frame_id)
        if not candidate.is_absolute():
            raise ClientError("path_not_allowed", f"output path must be absolute: {raw}", frame_id)
    else:
        if input_path.name in ("", ".", ".."):  # e.g. an empty /keypoints/target/path: nothing to put a name beside
            raise ClientError("bad_arguments", "empty output path", frame_id)
        candidate = input_path.with_name(input_path.name.rsplit(".", 1)[0] + DEFAULT_OUTPUT_SUFFIX)
    if candidate.name in ("", ".", ".."):
        raise ClientError("bad_arguments", f"output path has no file name: {raw}", frame_id)
    try:
        parent = candidate.parent.resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        raise ClientError("path_not_allowed", f"cannot resolve {candidate.parent}: {exc}", frame_id) from None
    out = parent / candidate.name
    if not _inside(out, roots) or out == parent:
        raise ClientError("path_not_allowed", f"{candidate} is outside the allowed roots", frame_id)
    try:
        is_symlink, parent_is_dir = out.is_symlink(), parent.is_dir()
    except OSError as exc:  # e.g. ENAMETOOLONG, EACCES: pathlib re-raises those
        raise ClientError("write_failed", f"cannot access {candidate}: {exc.strerror}", frame_id) from None
    if is_symlink:
        raise ClientError("path_not_allowed", f"{candidate} is a symlink; refusing to replace it", frame_id)
    if not parent_is_dir:
        raise ClientError("write_failed", f"output directory does not exist: {parent}", frame_id)
    return out
