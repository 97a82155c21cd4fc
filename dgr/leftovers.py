"""Temporary files and folders that a killed dgr leaves behind, and their removal.

Every temporary name dgr makes next to its outputs (in a target, the store, the cache, the
system's temporary folder) carries its owner: `<prefix><pid>-<start>.<random>`, where
`start` is the process's start time (field 22 of /proc/PID/stat), so that a PID reused by
another process does not pass for the owner. A later run that touches the same folder calls
:func:`remove_stale` for the prefixes it uses there: it removes what belonged to a process
that is gone, never what a live process (another dgr working meanwhile) still uses. Names
with the prefix but no owner (left by an older dgr) count as stale too.

A SIGKILL gives dgr no chance to clean up: mounts and processes die with it (their
namespaces, see dgr/sandbox.py), and these names are how the files go too.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dgr.log import log

_OWNER = re.compile(r"(\d+)-(\d+)\.")


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19].decode()  # field 22 of the whole line: 20th after the command name


@functools.cache
def _own_tag(pid: int) -> str:
    return f"{pid}-{_start_time(pid) or 0}."


def owner_tag() -> str:
    """`<pid>-<start>.`: what follows the prefix in the temporary names this process makes."""
    return _own_tag(os.getpid())  # per PID: a forked child tags its own names


def owned(prefix: str) -> str:
    """`prefix` followed by this process's tag (for tempfile's `prefix=`)."""
    return prefix + owner_tag()


def alive(name: str, prefix: str) -> bool:
    """Whether the owner of temporary `name` (made with `owned(prefix)`, or with a longer
    prefix that starts with `prefix`: `.image.aci.asc.` for `.image.aci.`) still runs."""
    match = _OWNER.search(name, len(prefix))
    if match is None:
        return False
    pid, start = int(match.group(1)), match.group(2)
    return _start_time(pid) == start


def remove_stale(folder: Path, *prefixes: str) -> list[Path]:
    """Remove the entries of `folder` named with one of `prefixes` whose owner is gone (or
    unknown); returns what was removed. A missing folder has none."""
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in entries:
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None or alive(name, prefix):
            continue
        path = folder / name
        remove(path)
        removed.append(path)
    if removed:
        log.debug("removed what a killed run left: %s", ", ".join(str(p) for p in removed))
    return removed


def remove(path: Path) -> None:
    """Remove `path` whatever it is (a folder with everything in it); never follows a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def make_dir(folder: Path | str | None, prefix: str, suffix: str = "") -> Path:
    """A new folder in `folder` (default: the system's temporary folder) named for this
    process, after removing the stale ones of the same `prefix` there."""
    parent = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    remove_stale(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=owned(prefix), suffix=suffix, dir=parent))


@contextmanager
def temporary_dir(folder: Path | str | None, prefix: str) -> Iterator[Path]:
    """:func:`make_dir`, removed at the end of the block."""
    path = make_dir(folder, prefix)
    try:
        yield path
    finally:
        remove(path)
