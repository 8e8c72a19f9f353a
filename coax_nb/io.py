"""Atomic file writes: a crash or interrupt never leaves a half-written result."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux reports it
    in /proc); elsewhere set and restored under a lock, so threads of this module never
    see the zero in between."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_text(path: os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename.

    The file gets the permissions a plain ``open(path, "w")`` would give (0o666 less the
    umask; mkstemp alone makes 0600). A symbolic link at ``path`` is replaced by the new
    file, never written through."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_writable_file(path: os.PathLike, what: str = "the output file") -> Path:
    """Check, before any work, that a file can be written at ``path``: not a folder, and
    its folder (or the nearest one that exists, which would hold the new ones) accepts a
    new file. Raises ValueError naming ``what``, the path and the fix."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'scores.json')!r}")
    check_writable_folder(path.parent, what, str(path))
    return path


def check_writable_folder(folder: os.PathLike, what: str = "the output folder", shown=None) -> Path:
    """Check that files can be created in ``folder`` (made later if missing): the nearest
    existing folder on its path must be a folder and accept a new file. Raises ValueError."""
    folder = Path(folder).expanduser().absolute()
    shown = str(folder) if shown is None else shown
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {shown!r} cannot be written: {str(existing)!r} is a file, not a folder; "
                         "choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {shown!r} cannot be written: no new file can be created in {str(existing)!r} "
                         f"({exc.strerror or exc}); choose a folder you can write to") from None
    return folder
