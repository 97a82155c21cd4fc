"""What a pod build produced, and where its apps' volumes come from.

Below both dgr/pod.py (which builds, runs and tests pods) and dgr/kube.py (which exports a
built pod to Kubernetes): plain data read by both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dgr.errors import DgrError
from dgr.manifest import App
from dgr.podmanifest import PodApp, PodManifest, PodVolume

if TYPE_CHECKING:
    from dgr.images import BuildResult


@dataclass(frozen=True)
class AppBuild:
    """One built app of a pod."""

    app: PodApp
    result: BuildResult

    @property
    def name(self) -> str:
        return self.app.name

    @property
    def runtime_app(self) -> App:
        """The app as the image runs it (inherited + the pod's changes)."""
        return self.result.manifest.aci.app


@dataclass(frozen=True)
class PodBuild:
    """What a pod build produced."""

    pod: PodManifest
    version: str
    target: Path
    apps: tuple[AppBuild, ...]

    @property
    def up_to_date(self) -> bool:
        return all(a.result.up_to_date for a in self.apps)

    @property
    def manifest_json(self) -> Path:
        return self.target / "pod-manifest.json"

    @property
    def kube_yaml(self) -> Path:
        return self.target / "pod.kube.yml"

    def app(self, name: str) -> AppBuild:
        for app in self.apps:
            if app.name == name:
                return app
        raise DgrError(
            f"no app named {name!r} in pod {self.pod.name}",
            hint=f"apps: {', '.join(a.name for a in self.apps)}",
        )


def app_mounts(pod: PodManifest, app: AppBuild) -> list[tuple[PodVolume, str, bool]]:
    """(volume, path, read-only) mounted in `app`: its `mounts`, then each of its mount points
    named like a pod volume (appc's matching by name)."""
    result: list[tuple[PodVolume, str, bool]] = []
    for mount in app.app.mounts:
        volume = pod.volume(mount.volume)
        assert volume is not None  # checked when parsing
        result.append((volume, mount.path, volume.read_only))
    for point in app.runtime_app.mount_points:
        volume = pod.volume(point.name)
        if volume is not None and all(path != point.path for _, path, _ in result):
            result.append((volume, point.path, point.read_only or volume.read_only))
    return result


def host_source(pod: PodManifest, volume: PodVolume) -> Path:
    """A host volume's folder (a relative source is relative to the pod folder)."""
    return (pod.project / os.path.expanduser(volume.source)).absolute()
