"""pytest-xdist scheduling: all items of one image folder on one worker, in order.

The build, the test container and the bats runs of an image are per-process state, so an
image's items must not be spread over workers. This scheduler is xdist's `loadscope` with
the image folder as the scope (items outside image folders are scheduled one by one, as
with `load`). Grouping by folder, unlike `xdist_group` marks with `--dist loadgroup`, leaves
node IDs (and so JUnit names) untouched.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from xdist.remote import Producer  # type: ignore[import-untyped]
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from dgr.project import project_kind


def image_scope(rootpath: Path, nodeid: str, cache: dict[str, str | None]) -> str | None:
    """The image folder (relative, as in node IDs) that `nodeid` belongs to, if any."""
    path = nodeid.split("::", 1)[0]
    if path in cache:
        return cache[path]
    found: str | None = None
    candidate = Path(path)
    for folder in (candidate, *candidate.parents):
        if project_kind(rootpath / folder) is not None:
            found = folder.as_posix()
            break
    cache[path] = found
    return found


class ImageScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """`loadscope` where the scope is the image (or pod) folder."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._rootpath = config.rootpath
        self._cache: dict[str, str | None] = {}

    def _split_scope(self, nodeid: str) -> str:
        scope = image_scope(self._rootpath, nodeid, self._cache)
        return f"dgr-image:{scope}" if scope is not None else nodeid


def dist_given(config: pytest.Config) -> bool:
    """Whether the user chose a --dist mode themselves (then we keep theirs)."""
    sources = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    sources += [str(a) for a in config.getini("addopts")]
    return any(str(a).startswith("--dist") for a in sources)
