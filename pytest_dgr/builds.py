"""Builds shared by a pytest session: each image folder built once, dependencies first.

`dgr.build.build` is already locked per target and incremental, so an image that built
fine is never built twice. What it cannot know is that a build *failed* earlier in this
session: a second worker would try again. So each build's outcome is recorded in a folder
shared by the session's processes (the controller creates it and hands it to the xdist
workers), under a lock per image folder; a later request for a failed image, directly or
as a dependency, fails at once with the recorded reason. Local dependencies are built
before their dependents, outside the dependents' locks, so the locks are taken in
dependency order and no two workers can wait for each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from dgr.errors import BuildError, DgrError, error_from_json
from dgr.manifest import load_manifest
from dgr.names import ImageName
from dgr.store import Store
from dgr.workspace import Workspace, target_dir

if TYPE_CHECKING:
    from dgr.build import BuildOptions, BuildResult


class DependencyFailed(DgrError):
    """A local dependency of the image failed to build in this session."""


@dataclass(frozen=True)
class SessionBuilds:
    """Build image folders once per session; `directory` is shared by all workers."""

    directory: Path
    options: BuildOptions

    def build(self, folder: Path) -> BuildResult:
        """The build of `folder` (its local dependencies first); DgrError on failure."""
        folder = folder.resolve()
        for dependency in self.local_dependencies(folder):
            try:
                self._build_once(dependency)
            except DgrError as exc:
                name = load_manifest(dependency).name
                raise DependencyFailed(
                    f"dependency {name} ({dependency}) failed to build: {exc.message}",
                    path=folder,
                    hint=f"see {build_log(dependency, self.options)}",
                ) from None
        return self._build_once(folder)

    def local_dependencies(self, folder: Path) -> list[Path]:
        """The local project folders `folder` depends on, dependencies before dependents."""
        ordered: list[Path] = []
        self._visit(folder, [], ordered)
        return [f for f in ordered if f != folder]

    def _visit(self, folder: Path, chain: list[Path], ordered: list[Path]) -> None:
        from dgr.resolve import find_local_project

        if folder in ordered:
            return
        if folder in chain:
            cycle = " -> ".join(str(f) for f in [*chain, folder])
            raise BuildError(f"dependency cycle: {cycle}", path=folder)
        manifest = load_manifest(folder)
        store = Store(self.options.config.store_path)
        names = (*manifest.aci.dependencies, *manifest.builder.dependencies, *manifest.tester.dependencies)
        for name in names:
            if not isinstance(name, ImageName) or store.find(name) is not None:
                continue  # an OCI image is fetched, not built
            local = find_local_project(name, folder)
            if local is not None:
                self._visit(local.resolve(), [*chain, folder], ordered)
        ordered.append(folder)

    def _record(self, folder: Path) -> Path:
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:20]
        return self.directory / f"build-{digest}.json"

    def _build_once(self, folder: Path) -> BuildResult:
        from dgr.build import build

        record = self._record(folder)
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(record) + ".lock"):
            if record.exists():
                data = json.loads(record.read_text())
                if not data["ok"]:
                    raise error_from_json(data["error"])  # the same class and fields
            try:
                result = build(folder, self.options)
            except DgrError as exc:
                record.write_text(json.dumps({"ok": False, "error": exc.to_json()}))
                raise
            record.write_text(json.dumps({"ok": True, "image": str(result.name)}))
            return result


def build_log(folder: Path, options: BuildOptions) -> Path:
    """Where the build of `folder` writes its log (`target/build.log`)."""
    try:
        manifest = load_manifest(folder)
    except DgrError:
        return folder / "target" / "build.log"
    return Workspace(target_dir(manifest, options.config, options.targets_root)).log


def read_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
