"""Incremental builds: a digest of every input of a build, compared with the last one's.

What the digest covers is documented in docs/build.md ("Incremental builds").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import dgr
from dgr.manifest import Manifest
from dgr.staging import attribute_sources
from dgr.workspace import Workspace

if TYPE_CHECKING:
    from dgr.build import BuildOptions, Dependency

# Not inputs of the image: VCS data, the test folder (it builds the test image, whose own key
# covers it) and caches that tools write into the project.
KEY_SKIPPED = (".git", "tests")
KEY_SKIPPED_ANYWHERE = ("__pycache__", ".pytest_cache")


def build_key(
    manifest: Manifest,
    options: BuildOptions,
    internals: Path,
    deps: tuple[Dependency, ...],
    builder_deps: tuple[Dependency, ...],
    target: Path,
    extra_attributes: tuple[tuple[str, Path], ...] = (),
) -> str:
    """A digest of every input of a build (documented in docs/build.md).

    Covers: dgr's version and internals, the content, mode and path of every project file
    (except the target folder, .git, tests/, mount sources and __pycache__/.pytest_cache), the
    resolved dependency and builder dependency IDs, and the set-env values. The log level is
    not an input: it changes no output.
    """
    h = hashlib.sha256()

    def add(*parts: str) -> None:
        for part in parts:
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    add("dgr", dgr.__version__, "internals", internals.name, "manifest", repr(manifest))
    for dep in deps:
        add("dep", str(dep.name), dep.image_id)
    for dep in builder_deps:
        add("builder-dep", str(dep.name), dep.image_id)
    for name, value in sorted(options.set_env.items()):
        add("env", name, value)
    for name, folder in extra_attributes:
        for path in attribute_sources(folder):
            add("attributes", name, path.name, path.read_text(encoding="utf-8", errors="surrogateescape"))
    project = manifest.project
    skip = {target.resolve(), *((project / name).resolve() for name in KEY_SKIPPED)}
    # Mount sources are caches that builds write to, not inputs.
    mounts = (*manifest.builder.mount_points, *manifest.build_mount_points)
    skip.update((project / m.source).resolve() for m in mounts if not m.source.startswith("~/"))
    for dirpath, dirnames, filenames in os.walk(project):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in KEY_SKIPPED_ANYWHERE and (Path(dirpath) / d).resolve() not in skip
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(project)
            mode = path.lstat().st_mode
            if rel.parts[0] == "runlevels":
                mode &= ~0o111  # scripts are made executable when they run
            add("file", str(rel), oct(mode))
            if path.is_symlink():
                add(os.readlink(path))
            elif path.is_file():
                with open(path, "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def up_to_date(ws: Workspace, key: str) -> bool:
    """Whether the last build of `ws` had this key and all its outputs are there."""
    outputs = (ws.aci, ws.manifest_json, ws.version_file, ws.layer, ws.oci)
    try:
        return ws.key_file.read_text() == key and all(p.exists() for p in outputs)
    except OSError:
        return False
