"""A build in progress: its inputs, its scratch folders and the two sandboxes its steps run
in — the builder root (the builder's dependencies, or busybox) with the image rootfs at
`/rootfs`, and the image rootfs itself (an overlay: dgr's internals and the dependencies'
layers below, this build's layer `upper` on top)."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import dgr
from dgr import userns
from dgr.builder_root import busybox_root
from dgr.errors import ManifestError
from dgr.images import Dependency, flatten
from dgr.log import level_name
from dgr.manifest import HostMount, Manifest
from dgr.options import BuildOptions
from dgr.sandbox import Bind, Overlay, Sandbox, make_scaffold
from dgr.workspace import Workspace

ROOTFS_IN_BUILDER = "/rootfs"


ACI_HOME = "/dgr/aci-home"


BUILDER_ATTRIBUTES = "/dgr/builder/attributes"


STAGES_IN_IMAGE = "/dgr/builder/stages"


TEMPLATER_INPUTS = "/dgr/builder/templater"  # the image's attributes/templates, copied out


STAGES = ("inherit", "project")  # staged folders copied into the image, in this order


SCRIPT_TIMEOUT_ENV = "DGR_SCRIPT_TIMEOUT"  # seconds execute_files (functions.sh) gives each script


@dataclass(frozen=True)
class BuildRun:
    """The state of a build in progress: the plan plus its scratch paths."""

    manifest: Manifest
    ws: Workspace
    options: BuildOptions
    internals: Path
    aci_deps: tuple[Dependency, ...]
    builder_deps: tuple[Dependency, ...]
    log_file: IO[str]
    extra_attributes: tuple[tuple[str, Path], ...] = ()
    runlevels: Path | None = None  # the staged build runlevels (staging.stage_build_runlevels)
    started: float = field(default_factory=time.monotonic)

    @property
    def project(self) -> Path:
        return self.manifest.project

    @property
    def timeout(self) -> float | None:
        """Seconds the runlevels may take in all: --timeout, else build.timeout."""
        found = self.options.timeout
        return found if found is not None else self.manifest.build_timeout

    @property
    def deadline(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout

    @property
    def script_timeout(self) -> float | None:
        """Seconds each script may take: --script-timeout, else build.scriptTimeout."""
        found = self.options.script_timeout
        return found if found is not None else self.manifest.script_timeout

    def image_overlay(self) -> Overlay:
        below = flatten(self.aci_deps)
        lowers = (self.internals, *(d.layer for d in reversed(below)), self.ws.scratch("scaffold"))
        return Overlay(
            mountpoint=self.ws.scratch("mnt/rootfs"),
            lowers=lowers,
            upper=self.ws.scratch("upper"),
            work=self.ws.scratch("ovl/rootfs"),
        )

    def builder_overlay(self, cache: Path) -> Overlay:
        base = tuple(d.layer for d in reversed(flatten(self.builder_deps))) or (busybox_root(cache),)
        return Overlay(
            mountpoint=self.ws.scratch("mnt/builder"),
            lowers=(self.internals, *base, self.ws.scratch("builder-scaffold")),
            upper=self.ws.scratch("builder-upper"),
            work=self.ws.scratch("ovl/builder"),
        )

    def script_env(self, *, in_builder: bool) -> dict[str, str]:
        """The environment of runlevel scripts (SPEC §4: manifest env < set-env)."""
        manifest = self.manifest
        env = {e.name: e.value for e in manifest.builder.environment}
        env.update(
            ACI_HOME=ACI_HOME,
            ACI_NAME=manifest.name.app_name,
            ACI_VERSION=manifest.name.version,
            ACI_EXEC=" ".join(shlex.quote(a) for a in manifest.aci.app.exec),
            LOG_LEVEL=level_name(self.options.log_level),
            DGR_VERSION=dgr.__version__,
        )
        if in_builder:
            env["ROOTFS"] = ROOTFS_IN_BUILDER
        if self.script_timeout:  # execute_files (functions.sh) kills a script after it
            env[SCRIPT_TIMEOUT_ENV] = str(math.ceil(self.script_timeout))
        env.update(self.options.set_env)
        return env

    def common_binds(self) -> list[Bind]:
        binds = [
            Bind(self.project, ACI_HOME),
            Bind(self.ws.scratch("builder-attributes"), BUILDER_ATTRIBUTES, read_only=False),
        ]
        if self.runlevels is not None:
            binds.append(Bind(self.runlevels, f"{ACI_HOME}/runlevels"))
        if Path("/etc/resolv.conf").exists():
            binds.append(Bind(Path("/etc/resolv.conf"), "/etc/resolv.conf"))
        return binds

    def image_sandbox(self, stages: tuple[Path, ...] = ()) -> Sandbox:
        """Where the image-rootfs steps run; `stages` are bound read-only at STAGES_IN_IMAGE."""
        binds = self.common_binds()
        for mount in self.manifest.build_mount_points:
            binds.append(Bind(host_mount_source(mount, self.project), mount.to, read_only=False))
        binds += [Bind(stage, f"{STAGES_IN_IMAGE}/{stage.name}") for stage in stages]
        binds.append(Bind(self.ws.scratch("templater"), TEMPLATER_INPUTS, read_only=False))
        overlay = self.image_overlay()
        return Sandbox(
            root=overlay.mountpoint,
            overlays=(overlay,),
            binds=tuple(binds),
            env=self.script_env(in_builder=False),
            host_network=True,
            hostname=self.manifest.name.app_name,
            tmpfs=(),  # what scripts leave in /tmp is dropped from the layer (see drop_tmp)
        )

    def builder_sandbox(self, cache: Path) -> Sandbox:
        image = self.image_overlay()
        builder = self.builder_overlay(cache)
        binds = [Bind(image.mountpoint, ROOTFS_IN_BUILDER, read_only=False), *self.common_binds()]
        for mount in self.manifest.builder.mount_points:
            binds.append(Bind(host_mount_source(mount, self.project), mount.to, read_only=False))
        return Sandbox(
            root=builder.mountpoint,
            overlays=(image, builder),
            binds=tuple(binds),
            env=self.script_env(in_builder=True),
            host_network=True,
            hostname="builder",
        )


def host_mount_source(mount: HostMount, project: Path) -> Path:
    """A mount `from`: `~/x` is in the invoking user's home, relative paths in the project."""
    source = mount.source
    if source.startswith("~/"):
        home = Path(os.path.expanduser("~" + os.environ.get("SUDO_USER", "")))
        return home / source[2:]
    return (project / source).resolve()


def prepare_mount_sources(manifest: Manifest) -> None:
    """Check that every mount `from` of the build exists, before anything runs: a missing one
    is an error naming it, unless the mount is `optional`; it is then created (as the
    original created every one, issue #202), owned by the sandboxes' root so that scripts
    can write into it (e.g. a download cache)."""
    for mount in (*manifest.builder.mount_points, *manifest.build_mount_points):
        path = host_mount_source(mount, manifest.project)
        if path.exists():
            continue
        if not mount.optional:
            raise ManifestError(
                f"mount point source {mount.source!r} does not exist ({path})",
                path=manifest.path if manifest.path.exists() else manifest.project,
                line=mount.line,
                key=mount.key,
                hint="create it, or add `optional: true` to the mount point to have dgr create it empty",
            )
        path.mkdir(parents=True)
        userns.current().give(path)


def make_scaffolds(b: BuildRun) -> None:
    """Mount targets for both roots, so no runtime creates them inside a layer."""
    targets = [ACI_HOME, BUILDER_ATTRIBUTES]
    make_scaffold(
        b.ws.scratch("scaffold"),
        dirs=[
            *targets,
            *(f"{STAGES_IN_IMAGE}/{name}" for name in STAGES),
            TEMPLATER_INPUTS,
            *(m.to for m in b.manifest.build_mount_points),
        ],
        files=["/etc/resolv.conf"],
    )
    make_scaffold(
        b.ws.scratch("builder-scaffold"),
        dirs=[*targets, ROOTFS_IN_BUILDER, *(m.to for m in b.manifest.builder.mount_points)],
        files=["/etc/resolv.conf"],
    )
    ids = userns.current()
    for scratch in ("builder-attributes", "templater"):  # scripts write here
        b.ws.scratch(scratch).mkdir()
        ids.give(b.ws.scratch(scratch))


def make_tmp(upper: Path) -> None:
    """Every image gets an empty, world-writable /tmp (created before any mount)."""
    tmp = upper / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o1777)
    ids = userns.current()
    ids.give(upper)
    ids.give(tmp)


def drop_tmp(upper: Path) -> None:
    """Remove what build steps left in /tmp: not part of the image (as in the original)."""
    tmp = upper / "tmp"
    if tmp.is_dir() and not tmp.is_symlink():
        for entry in tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
