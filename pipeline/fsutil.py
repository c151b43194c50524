"""Atomic file output (a killed run never leaves a file that looks complete) and per-folder locks
(two runs never write one stage folder at the same time)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator

log = logging.getLogger("pipeline")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.x.tmp1234.mp4``) so writers that infer the
    format from the extension still work. On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``folder`` itself (no lock file) for the block.

    Exclusive (writers): creates the folder, waits for every other holder. ``shared`` (readers): waits
    for a writer only; a missing folder has nothing to wait for. The kernel releases the lock when its
    process ends, however it ends, so a killed run never leaves a stale lock. Waiting is logged.
    """
    folder = Path(folder)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        if not shared:
            folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if shared:  # nothing there: no writer to wait for
                yield
                return
            continue
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another run is writing it; waiting for that run to finish", folder)
            fcntl.flock(fd, mode)
        if _same_folder(fd, folder):
            break
        os.close(fd)  # the holder removed the folder (``remove_if_empty``) while this run waited: start again
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _same_folder(fd: int, folder: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(folder))
    except FileNotFoundError:
        return False


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it holds nothing (call while holding its ``folder_lock``; waiters then retry)."""
    with contextlib.suppress(OSError):
        Path(folder).rmdir()
