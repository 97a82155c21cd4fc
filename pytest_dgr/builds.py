"""Builds shared by a pytest session: each image folder built once, dependencies first
(in the order of the project's plan, dgr/plan.py).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from dgr.errors import DgrError, error_from_json
from dgr.images import BuildResult
from dgr.manifest import Manifest
from dgr.manifest_load import load_manifest
from dgr.options import BuildOptions
from dgr.plan import Built, Node, Plan, Source, carry_out
from dgr.workspace import Workspace, target_dir


class DependencyFailed(DgrError):
    """A local dependency of the image failed to build in this session."""


@dataclass(frozen=True)
class SessionBuilds:
    """Build image folders once per session; `directory` is shared by all workers."""

    directory: Path
    options: BuildOptions
    # The builds this process already made or found up to date (a dependency shared by
    # several images is not checked again).
    done: dict[Path, BuildResult] = field(default_factory=dict, compare=False)

    def carry_out(
        self, plan: Plan, *, upto: tuple[str, ...] | None = None, built: Built | None = None
    ) -> Built:
        """The plan's images in its order (`dgr.plan.carry_out`), each project and test image
        built through the session's records (a pod's apps are left to dgr/pod.py)."""

        def step(node: Node, run: Callable[[], BuildResult]) -> BuildResult:
            assert node.project is not None and node.manifest is not None
            if node.key in plan.roots or node.source is Source.TESTS:
                return self._build_once(node.project, run)
            try:
                return self._build_once(node.project, run)
            except DgrError as exc:
                raise DependencyFailed(
                    f"dependency {node.name} ({node.project}) failed to build: {exc.message}",
                    path=plan.project,
                    hint=f"see {manifest_log(node.manifest, self.options)}",
                ) from None

        return carry_out(plan, self.options, upto=upto, step=step, built=built)

    def _record(self, folder: Path) -> Path:
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:20]
        return self.directory / f"build-{digest}.json"

    def _build_once(self, folder: Path, run: Callable[[], BuildResult]) -> BuildResult:
        if folder in self.done:
            return self.done[folder]
        record = self._record(folder)
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(record) + ".lock"):
            if record.exists():
                data = json.loads(record.read_text())
                if not data["ok"]:
                    raise error_from_json(data["error"])  # the same class and fields
            try:
                result = run()
            except DgrError as exc:
                record.write_text(json.dumps({"ok": False, "error": exc.to_json()}))
                raise
            record.write_text(json.dumps({"ok": True, "image": str(result.name)}))
            self.done[folder] = result
            return result


def build_log(folder: Path, options: BuildOptions) -> Path:
    """Where the build of `folder` writes its log (`target/build.log`)."""
    try:
        manifest = load_manifest(folder)
    except DgrError:
        return folder / "target" / "build.log"
    return manifest_log(manifest, options)


def manifest_log(manifest: Manifest, options: BuildOptions) -> Path:
    return Workspace(target_dir(manifest, options.config, options.targets_root)).log


def read_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
