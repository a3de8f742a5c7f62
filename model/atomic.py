"""Atomic file writes whose leftovers are cleaned up.

:func:`atomic_torch_save` writes to a temporary file ``.NAME.XXXX.tmp`` next to the
target and renames it over the target, so a reader never sees half a file. A writer
that is killed leaves its temporary file behind; :func:`remove_stale_temporaries`,
run by the next save and by checkpoint loads, removes such files.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # Windows has no fcntl: stale files are told by their age instead
    fcntl = None  # type: ignore[assignment]

# Without file locks, a temporary file this old is taken to belong to a dead writer.
STALE_AFTER_S = 3600.0


def _temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left; return them.

    A live writer holds an exclusive lock on its temporary file (see
    :func:`atomic_torch_save`), so a file whose lock can be taken has no writer and goes;
    one still being written is left alone. Without ``fcntl``, files older than
    :data:`STALE_AFTER_S` go.
    """
    removed = []
    for tmp in _temporaries(Path(path)):
        try:
            if fcntl is None:
                if time.time() - tmp.stat().st_mtime > STALE_AFTER_S:
                    tmp.unlink()
                    removed.append(tmp)
                continue
            with open(tmp, "rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer
                tmp.unlink()  # while we hold the lock, so a writer that got it later sees the file gone
                removed.append(tmp)
        except FileNotFoundError:  # another cleaner or the writer's rename was first
            continue
        except OSError:
            continue  # not ours to remove (permissions, ...): leave it
    return removed


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path``, open and exclusively locked by this process."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # a cleaner may have taken the file between mkstemp and the lock
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    The temporary file is locked while it is written, which tells
    :func:`remove_stale_temporaries` (run first) that it is not stale.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = _locked_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # still locked: a cleaner cannot take the finished file
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
