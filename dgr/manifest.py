"""`aci-manifest.yml` as a typed, frozen model: the image, its builder, tester and app.

Read into this model by dgr/manifest_load.py (template: dgr/manifest_template.py; validation:
dgr/manifest_reader.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgr.names import ImageName
from dgr.readiness import Readiness, from_annotations
from dgr.reference import Reference

ACI_MANIFEST = "aci-manifest.yml"
POD_MANIFEST = "pod-manifest.yml"
DEFAULT_EXEC = ("/dgr/bin/busybox", "sh")


@dataclass(frozen=True)
class NameValue:
    name: str
    value: str


@dataclass(frozen=True)
class HostMount:
    """A host path (`from`, relative to the project or `~/`) bound at `to` during a build.

    A missing `from` is an error, unless the mount is `optional`: it is then created empty
    (the original created every missing one). `key` and `line` locate it in the manifest.
    """

    source: str
    to: str
    optional: bool = False
    key: str = field(default="", compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AppMountPoint:
    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str = "tcp"
    count: int = 1
    socket_activated: bool = False


@dataclass(frozen=True)
class Isolator:
    name: str
    value: Any


@dataclass(frozen=True)
class App:
    exec: tuple[str, ...] = DEFAULT_EXEC
    user: str = "0"
    group: str = "0"
    supplementary_gids: tuple[int, ...] = ()
    working_directory: str = ""
    environment: tuple[NameValue, ...] = ()
    mount_points: tuple[AppMountPoint, ...] = ()
    ports: tuple[Port, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    # The keys the manifest sets (the rest may be inherited), sorted: the manifest's repr is an
    # input of the build key, and a set's order changes from one process to the next.
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Builder:
    image: ImageName | None = None
    environment: tuple[NameValue, ...] = ()
    dependencies: tuple[Reference, ...] = ()
    mount_points: tuple[HostMount, ...] = ()


@dataclass(frozen=True)
class Tester:
    builder: Builder = field(default_factory=Builder)
    dependencies: tuple[Reference, ...] = ()
    environment: tuple[NameValue, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    readiness: Readiness | None = None


@dataclass(frozen=True)
class Aci:
    dependencies: tuple[Reference, ...] = ()
    annotations: tuple[NameValue, ...] = ()
    path_whitelist: tuple[str, ...] = ()
    app: App = field(default_factory=App)


@dataclass(frozen=True)
class Manifest:
    """A validated aci-manifest.yml."""

    name: ImageName
    path: Path
    builder: Builder = field(default_factory=Builder)
    build_mount_points: tuple[HostMount, ...] = ()
    tester: Tester = field(default_factory=Tester)
    aci: Aci = field(default_factory=Aci)
    # Seconds the build's runlevels may take in all (`build.timeout`), and each script
    # (`build.scriptTimeout`); None: no limit. Not inputs of the image (not in its key).
    build_timeout: float | None = field(default=None, repr=False)
    script_timeout: float | None = field(default=None, repr=False)

    @property
    def project(self) -> Path:
        return self.path.parent

    def readiness(self) -> Readiness | None:
        """The image's check: its own `tester.readiness`, else the one its annotations carry
        (the app of a pod, generated from its image)."""
        return self.tester.readiness or from_annotations((a.name, a.value) for a in self.aci.annotations)
