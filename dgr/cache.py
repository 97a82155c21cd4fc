"""dgr's machine cache: folders built once, shared by every build and every xdist worker.

:func:`cached_folder` is the one way such a folder is made: under a file lock, into a
staging folder next to it, renamed into place when complete. Readers never see half a
folder; concurrent callers wait for the first one; a crash leaves only a staging folder,
which the next caller removes (dgr/leftovers.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from dgr.leftovers import owned, remove_stale

LOCK_TIMEOUT = 600.0


def cached_folder(dest: Path, produce: Callable[[Path], None]) -> Path:
    """`dest`, made by `produce(staging)` the first time (the staging folder exists, empty)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock", timeout=LOCK_TIMEOUT):
        if dest.is_dir():
            return dest
        # `~`: no other cached folder's staging name starts with this one's (a `NAME.layer`).
        prefix = f".{dest.name}~"
        remove_stale(dest.parent, prefix)
        staging = Path(tempfile.mkdtemp(prefix=owned(prefix), dir=dest.parent))
        try:
            produce(staging)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest
