"""Files under an allowed root, opened without following links: the *use* side of the check in
:mod:`bridge.formats.paths`.

:func:`bridge.formats.paths.resolve_input` checks a path when the message names it. Between that
check and the worker's open (the worker may be busy with another client's frame for seconds),
anyone who can write inside a root can swap a folder or the file for a symbolic link, a FIFO or a
device. So the worker never opens the checked path by name. It opens the root itself (a folder,
not a link), then each folder below it relative to the previous folder's descriptor with
``O_NOFOLLOW | O_DIRECTORY``, then the file relative to the last one with ``O_NOFOLLOW |
O_NONBLOCK`` and checks with ``fstat`` that it is a regular file. A link anywhere below the root
fails the walk (``ELOOP``/``ENOTDIR``) and is refused, never followed; a FIFO or device is opened
without blocking and refused; the bytes are counted while they are read, so a file that grows
after the size check cannot push the daemon past ``max_bytes``.

Writes go to an unpredictable temporary name created exclusively (``O_EXCL | O_NOFOLLOW``) in the
verified folder and are renamed into place relative to the same descriptor: a link planted at the
final name is replaced, not written through.

Where the platform lacks ``dir_fd`` or ``O_NOFOLLOW`` (Windows), the same functions open by path
after an ``lstat`` check: a swap inside that window is not caught there (docs/SECURITY.md).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ClientError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
#: True where folders can be walked by descriptor without following links (Linux, macOS, BSD).
WALKS_BY_DESCRIPTOR = bool(_NOFOLLOW and _DIRECTORY and os.open in os.supports_dir_fd
                           and os.rename in os.supports_dir_fd and os.stat in os.supports_dir_fd)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
_READ_CHUNK = 1 << 20


def split_under_root(path: Path, roots: tuple[Path, ...]) -> tuple[Path, tuple[str, ...]]:
    """``(root, folders below it)`` for the parent folder of ``path`` (absolute, already resolved and
    checked inside a root by :mod:`bridge.formats.paths`). The deepest root containing it wins; with
    no roots (a tool's own file, not a client's) the parent itself is the trusted start."""
    parent = path.parent
    for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
        if parent == root or parent.is_relative_to(root):
            return root, parent.relative_to(root).parts
    if roots:
        raise ClientError("path_not_allowed", f"{path} is outside the allowed roots")
    return parent, ()


def _link_refusal(where: Path, frame_id: int) -> ClientError:
    return ClientError("path_not_allowed", f"{where} is a symbolic link (or was swapped for one); links below "
                       "an allowed root are not followed", frame_id)


def _refusal(exc: OSError, path: Path, code: str, doing: str, frame_id: int) -> ClientError:
    """The answer for an ``os.open``/``os.mkdir`` of ``path`` that failed: a link refusal where it
    met a link (``ELOOP`` under ``O_NOFOLLOW``), else ``code`` saying what could not be done."""
    if exc.errno == errno.ELOOP:
        return _link_refusal(path, frame_id)
    return ClientError(code, f"cannot {doing} {path}: {exc.strerror}", frame_id)


def _in_folder(path: Path, dir_fd: int | None) -> str | Path:
    """How to name ``path`` beside ``dir_fd``: its bare name relative to the descriptor, or the
    whole path where the platform cannot walk by descriptor (``dir_fd`` None)."""
    return path.name if dir_fd is not None else path


@contextmanager
def parent_folder(path: Path, roots: tuple[Path, ...], frame_id: int, missing_code: str) -> Iterator[int | None]:
    """Yield a descriptor of ``path``'s parent folder, reached from its root without following links
    (None where the platform cannot walk by descriptor). ``missing_code`` is the error code when a
    folder on the way does not exist or is not a folder (``file_not_found`` for inputs,
    ``write_failed`` for outputs)."""
    root, folders = split_under_root(path, roots)
    if not WALKS_BY_DESCRIPTOR:
        for i in range(len(folders) + 1):  # best effort: lstat each folder (a race stays open here)
            step = root.joinpath(*folders[:i])
            try:
                if step.is_symlink():
                    raise _link_refusal(step, frame_id)
            except OSError as exc:
                raise ClientError(missing_code, f"cannot access {step}: {exc.strerror}", frame_id) from None
        yield None
        return
    fd = -1
    step = root
    try:
        try:
            # The root is configuration (resolved at start, so no link); with no roots the start is
            # the caller's own folder, which may be reached through a link (e.g. macOS's /tmp).
            fd = os.open(root, _DIR_FLAGS if roots else _DIR_FLAGS & ~_NOFOLLOW)
            for name in folders:
                step = step / name
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and step.is_symlink()):
                raise _link_refusal(step, frame_id) from None
            what = "does not exist" if exc.errno == errno.ENOENT else "is not a folder" \
                if exc.errno == errno.ENOTDIR else f"cannot be opened ({exc.strerror})"
            raise ClientError(missing_code, f"folder {step} {what}", frame_id) from None
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def read_bytes(path: Path, roots: tuple[Path, ...], *, max_bytes: int, frame_id: int) -> bytes:
    """The bytes of the regular file ``path`` (under a root), at most ``max_bytes``.

    Raises ClientError ``path_not_allowed`` (a link on the way or at the file), ``file_not_found``
    (missing, a FIFO, device, socket or folder) or ``image_too_large`` (over ``max_bytes``, checked
    before reading and again while reading: a file that grows meanwhile is cut off and refused)."""
    with parent_folder(path, roots, frame_id, "file_not_found") as dir_fd:
        try:
            if dir_fd is None and path.is_symlink():
                raise _link_refusal(path, frame_id)
            fd = os.open(_in_folder(path, dir_fd), os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY,
                         dir_fd=dir_fd)
        except FileNotFoundError:
            raise ClientError("file_not_found", f"no such file: {path}", frame_id) from None
        except OSError as exc:
            raise _refusal(exc, path, "file_not_found", "open", frame_id) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # opened without blocking: a FIFO nobody writes cannot stall us
                raise ClientError("file_not_found", f"{path} is not a regular file (a FIFO, device, socket or "
                                  "folder)", frame_id)
            if st.st_size > max_bytes:
                raise ClientError("image_too_large", f"{path.name} is {st.st_size} bytes (limit {max_bytes})",
                                  frame_id)
            return _read_capped(fd, st.st_size, max_bytes, path, frame_id)
        finally:
            os.close(fd)


def _read_capped(fd: int, expected: int, max_bytes: int, path: Path, frame_id: int) -> bytes:
    """Read to the end of ``fd``, refusing more than ``max_bytes`` whatever the file does meanwhile."""
    buf = bytearray(expected + 1)  # one byte more: a file that grew since fstat is noticed
    view = memoryview(buf)
    got = 0
    try:
        while got < len(buf):
            n = os.readv(fd, [view[got:]]) if hasattr(os, "readv") else _read_into(fd, view[got:])
            if n == 0:
                return bytes(view[:got])
            got += n
        chunks = [bytes(view)]
        while True:  # it grew: go on, but only up to the cap
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            got += len(chunk)
            if got > max_bytes:
                raise ClientError("image_too_large", f"{path.name} grew past {max_bytes} bytes while it was read",
                                  frame_id)
            chunks.append(chunk)
    except OSError as exc:
        raise ClientError("file_not_found", f"cannot read {path}: {exc.strerror}", frame_id) from None
    finally:
        view.release()


def _read_into(fd: int, view: memoryview) -> int:
    data = os.read(fd, min(len(view), _READ_CHUNK))
    view[: len(data)] = data
    return len(data)


def write_atomic(path: Path, data: bytes | memoryview, roots: tuple[Path, ...], frame_id: int) -> None:
    """Publish ``data`` as ``path`` (under a root): an exclusive temporary file in the verified parent
    folder, renamed over ``path`` relative to it. A reader polling ``path`` sees the old file or the
    whole new one. Raises ClientError ``path_not_allowed`` (a link on the way or at ``path``) or
    ``write_failed``."""
    with parent_folder(path, roots, frame_id, "write_failed") as dir_fd:
        here = (lambda name: name) if dir_fd is not None else (lambda name: str(path.parent / name))
        try:
            st = os.stat(here(path.name), dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise ClientError("write_failed", f"cannot access {path}: {exc.strerror}", frame_id) from None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise ClientError("path_not_allowed", f"{path} is a symlink; refusing to replace it", frame_id)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ClientError("write_failed", f"{path} is a folder", frame_id)
        # Only a prefix of the name: the full name plus the suffix could exceed NAME_MAX (255 bytes).
        tmp = f".{path.name[:48]}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(here(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, 0o666,
                         dir_fd=dir_fd)
        except OSError as exc:
            raise ClientError("write_failed", f"cannot write {path}: {exc.strerror}", frame_id) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(here(tmp), here(path.name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            try:
                os.unlink(here(tmp), dir_fd=dir_fd)
            except OSError:  # the cleanup must not replace the write_failed answer
                pass
            raise ClientError("write_failed", f"cannot write {path}: {exc.strerror}", frame_id) from None


def make_folder(path: Path, roots: tuple[Path, ...], frame_id: int, mode: int = 0o777) -> int:
    """Create the new folder ``path`` (under a root) and return a descriptor of it, opened without
    following links (the caller closes it). Raises ClientError ``write_failed`` (exists already, or
    cannot be made) or ``path_not_allowed``. Needs :data:`WALKS_BY_DESCRIPTOR`."""
    with parent_folder(path, roots, frame_id, "write_failed") as dir_fd:
        try:
            os.mkdir(_in_folder(path, dir_fd), mode, dir_fd=dir_fd)
            return os.open(_in_folder(path, dir_fd), _DIR_FLAGS, dir_fd=dir_fd)
        except FileExistsError:
            raise ClientError("write_failed", f"{path} exists already", frame_id) from None
        except OSError as exc:
            raise _refusal(exc, path, "write_failed", "create", frame_id) from None


def create_in(dir_fd: int, name: str, mode: int = 0o666) -> int:
    """A new file ``name`` in the folder ``dir_fd``, created exclusively and never through a link."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, mode, dir_fd=dir_fd)
