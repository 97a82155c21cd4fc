"""The build's timestamp, for reproducible images (docs/build.md, "Reproducible images").

Every time an image records comes from one number of seconds since 1970-01-01 UTC, the
build epoch: the appc `build-date` annotation, the OCI config's `created` and history, and
the mtimes of the layer's files (clamped: nothing is newer than the epoch). It is
`SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else the time of the last git commit
that touched the project folder, else 0. So two builds of the same inputs, in other folders,
at other times, on other machines, give the same bytes.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from dgr.errors import DgrError
from dgr.log import log
from dgr.process import run

ENV = "SOURCE_DATE_EPOCH"
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: RFC3339 years have four digits
GIT_TIMEOUT = 30.0


def from_environment(environ: Mapping[str, str] | None = None) -> int | None:
    """`SOURCE_DATE_EPOCH` as an integer, None when unset or empty, a DgrError when invalid."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EPOCH:
        raise DgrError(
            f"{ENV}={value!r} is not a number of seconds since 1970-01-01 UTC",
            key=ENV,
            hint=f"set it to an integer up to {MAX_EPOCH} (e.g. $(git log -1 --format=%ct)) or unset it",
        )
    return int(value)


def git_commit_epoch(project: Path) -> int | None:
    """The commit time of the last commit that touched `project`, or None (no git, no commit)."""
    git = shutil.which("git")
    if git is None:
        return None
    # safe.directory: dgr often runs as root on a checkout owned by a user.
    result = run(
        [git, "-c", "safe.directory=*", "-C", project, "log", "-1", "--format=%ct", "--", "."],
        check=False,
        timeout=GIT_TIMEOUT,
    )
    last = result.output.strip().splitlines()[-1:] if result.returncode == 0 else []
    if not last or not last[0].isdigit():
        log.debug("no git commit for %s: build epoch 0", project)
        return None
    return int(last[0])


def build_epoch(project: Path, environ: Mapping[str, str] | None = None) -> int:
    """The build epoch of `project`: SOURCE_DATE_EPOCH, else its last git commit time, else 0."""
    explicit = from_environment(environ)
    if explicit is not None:
        return explicit
    found = git_commit_epoch(project)
    return found if found is not None else 0


def rfc3339(epoch: int) -> str:
    """`epoch` as an RFC3339 UTC timestamp to the second (`1970-01-01T00:00:00Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def clamp_mtimes(root: Path, epoch: int) -> int:
    """Set the mtime (and atime) of every entry under `root`, `root` included, that is newer
    than `epoch` to `epoch`; symlinks themselves, never followed. Returns how many changed."""
    return _set_mtimes(root, epoch, only_newer=True)


def reset_mtimes(root: Path, epoch: int) -> int:
    """Set the mtime (and atime) of every entry under `root`, `root` included, to `epoch`:
    for copies of project files, whose times say when they were checked out, not what they hold."""
    return _set_mtimes(root, epoch, only_newer=False)


def _set_mtimes(root: Path, epoch: int, *, only_newer: bool) -> int:
    # Changing an entry's times does not change its directory's mtime: one pass is enough.
    changed = 0

    def visit(path: str, st: os.stat_result) -> None:
        nonlocal changed
        if st.st_mtime > epoch or (not only_newer and st.st_mtime != epoch):
            os.utime(path, (epoch, epoch), follow_symlinks=False)
            changed += 1

    visit(os.fspath(root), os.lstat(root))
    pending = [os.fspath(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                visit(entry.path, st)
                if stat.S_ISDIR(st.st_mode):
                    pending.append(entry.path)
    return changed
