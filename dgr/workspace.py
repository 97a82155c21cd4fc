"""Paths of one build: the target folder, its outputs and its scratch `work/` folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dgr.config import Config
from dgr.manifest import Manifest


def target_dir(manifest: Manifest, config: Config, targets_root: Path | None = None) -> Path:
    """`<project>/target`, or `<targetWorkDir>/<short name>` when configured (`-p` wins)."""
    root = targets_root or config.target_work_dir
    if root is None:
        return manifest.project / "target"
    return (root / manifest.name.short_name).absolute()


@dataclass(frozen=True)
class Workspace:
    """Everything under one target folder."""

    target: Path

    # outputs
    @property
    def aci(self) -> Path:
        return self.target / "image.aci"

    @property
    def manifest_json(self) -> Path:
        return self.target / "manifest.json"

    @property
    def version_file(self) -> Path:
        return self.target / "version"

    @property
    def oci(self) -> Path:
        return self.target / "oci"

    @property
    def build_json(self) -> Path:
        """What the build produced, as JSON (dgr/metadata.py)."""
        return self.target / "build.json"

    @property
    def layer(self) -> Path:
        """This image's own layer as a directory (overlay upper dir format)."""
        return self.target / "layer"

    @property
    def log(self) -> Path:
        return self.target / "build.log"

    @property
    def key_file(self) -> Path:
        return self.target / "build.key"

    @property
    def lock(self) -> Path:
        return self.target / ".lock"

    # scratch
    @property
    def work(self) -> Path:
        return self.target / "work"

    def scratch(self, name: str) -> Path:
        return self.work / name

    def reset_work(self) -> None:
        """Remove what a previous (maybe killed) build left in work/ and start empty."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
