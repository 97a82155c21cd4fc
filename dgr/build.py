"""Building one image: the pipeline of SPEC §4, in the original's order.

resolve dependencies → builder root → inherit-build-early (builder deps) → `builder`
runlevel → inherit-build-early + `build` in the image rootfs → copy prestart runlevels,
attributes, files, templates → `build-late` + inherit-build-late → inherit-build-late
(builder deps) → render the manifest → package (image.aci, manifest.json, version, oci/).

The image rootfs during the build is an overlay: dgr's internals and the dependencies'
layers below, this build's layer (`upper`) on top; only `upper` becomes the image's layer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from filelock import FileLock

import dgr
from dgr import epoch, userns
from dgr.builder_root import busybox_root
from dgr.buildkey import build_key, up_to_date
from dgr.cache import cached_folder
from dgr.config import Config, load_config
from dgr.errors import BuildError, DgrError, ManifestError, host_errors
from dgr.leftovers import remove_stale
from dgr.log import level_name, log, step
from dgr.manifest import HostMount, Manifest, NameValue
from dgr.manifest_load import load_manifest
from dgr.manifest_template import is_templated
from dgr.names import ImageName, generate_version
from dgr.process import kill_group
from dgr.reference import OciReference, Reference
from dgr.sandbox import Bind, Overlay, Sandbox, make_scaffold
from dgr.staging import (
    check_inputs,
    has_scripts,
    inside_project,
    stage_build_runlevels,
    stage_inherit_runlevels,
    stage_project,
)
from dgr.workspace import Workspace, target_dir

if TYPE_CHECKING:
    from dgr.oci import LayerBlob
    from dgr.ocistore import StoredOciImage

ROOTFS_IN_BUILDER = "/rootfs"
ACI_HOME = "/dgr/aci-home"
BUILDER_ATTRIBUTES = "/dgr/builder/attributes"
STAGES_IN_IMAGE = "/dgr/builder/stages"
TEMPLATER_INPUTS = "/dgr/builder/templater"  # the image's attributes/templates, copied out
# In the target: the attributes the build scripts wrote, to render the manifest of an up-to-date
# build as its build did.
BUILT_ATTRIBUTES = "builder-attributes.json"
STAGES = ("inherit", "project")  # staged folders copied into the image, in this order
SCRIPT_TIMEOUT_ENV = "DGR_SCRIPT_TIMEOUT"  # seconds execute_files (functions.sh) gives each script


@dataclass(frozen=True)
class BuildOptions:
    """How to build: what the command line and the configuration said."""

    config: Config
    set_env: Mapping[str, str] = field(default_factory=dict)
    log_level: int = 20
    keep: bool = False
    echo: bool = False
    targets_root: Path | None = None
    shell_on_failure: bool = False  # a debugging shell in the sandbox of a failing step
    shell_after: str = ""  # a debugging shell after this step (one of SHELL_STEPS)
    # Seconds all runlevels of a build may take, and each script (--timeout,
    # --script-timeout); None: the manifest's build.timeout / build.scriptTimeout, if any.
    timeout: float | None = None
    script_timeout: float | None = None
    # The builds this one is a dependency of, outermost first, as (project folder, image
    # name): a dependency that needs one of them again is a cycle (see _check_cycle).
    building: tuple[tuple[Path, str], ...] = ()

    @classmethod
    def from_settings(
        cls,
        *,
        home: str | None,
        targets_root: str | None,
        set_env: Mapping[str, str],
        log_level: int,
        keep: bool = False,
        **more: Any,
    ) -> BuildOptions:
        """The options both faces make from what the user gave (the CLI's flags, the pytest
        plugin's --dgr-* options): the configuration of `home` (default ~/.config/dgr), the
        targets root made absolute, scripts' output echoed at debug level."""
        return cls(
            config=load_config(Path(home) if home else None),
            set_env=set_env,
            log_level=log_level,
            keep=keep,
            echo=log_level <= logging.DEBUG,
            targets_root=Path(targets_root).absolute() if targets_root else None,
            **more,
        )


@dataclass(frozen=True)
class Dependency:
    """A resolved dependency: pinned name, image ID, its own layer and its own dependencies.

    An OCI image is one per layer (image ID: the layer's OCI chain ID), each depending on the
    layer below; every one keeps its `blob` as fetched, the top one the stored image (`oci`).
    """

    name: Reference
    image_id: str
    layer: Path
    dependencies: tuple[Dependency, ...] = ()
    blob: LayerBlob | None = None
    oci: StoredOciImage | None = None


def flatten(deps: tuple[Dependency, ...]) -> tuple[Dependency, ...]:
    """Every image below `deps`, bottom first (a dependency's dependencies before it), once."""
    seen: set[str] = set()
    order: list[Dependency] = []

    def visit(dep: Dependency) -> None:
        for child in dep.dependencies:
            visit(child)
        if dep.image_id not in seen:
            seen.add(dep.image_id)
            order.append(dep)

    for dep in deps:
        visit(dep)
    return tuple(order)


# An image's resolved (aci, builder) dependencies, in the order its manifest lists them.
Resolved = tuple[tuple[Dependency, ...], tuple[Dependency, ...]]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced (or found up to date)."""

    manifest: Manifest
    name: ImageName
    workspace: Workspace
    image_id: str
    dependencies: tuple[Dependency, ...]
    internals: Path
    up_to_date: bool = False

    @property
    def layers(self) -> tuple[Path, ...]:
        """Every layer of the image, bottom first: dependencies, dgr internals, its own."""
        return (*(d.layer for d in flatten(self.dependencies)), self.internals, self.workspace.layer)


@dataclass(frozen=True)
class _Build:
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
            tmpfs=(),  # what scripts leave in /tmp is dropped from the layer (see _drop_tmp)
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


def _scaffold(b: _Build) -> None:
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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _failed_script(output: str) -> str | None:
    """What execute_files (functions.sh) said about the script that failed: `PATH (exit N)`,
    or `PATH timed out (after Ns)`."""
    for line in reversed(output.splitlines()):
        if "Script failed -> " in line:
            return line.split("Script failed -> ", 1)[1].strip()
        if "Script timed out -> " in line:
            script, _, after = line.split("Script timed out -> ", 1)[1].strip().partition(" ")
            return f"{script} timed out {after}".strip()
    return None


# Runs build steps in one sandbox: each step is `KIND LABEL PATH` in "$@". The umask is fixed so
# that the modes of the files that steps create do not depend on the host's (reproducibility).
# Markers (`### dgr step: ...`) let dgr log each step as it starts and name a failing one.
STEPS_SCRIPT = r"""
umask 022
. /dgr/bin/functions.sh
B=/dgr/bin/busybox
while [ "$#" -ge 3 ]; do
  kind=$1 label=$2 path=$3
  shift 3
  echo "### dgr step: $label"
  case $kind in
    runlevel) execute_files "$path" || exit 1 ;;
    copy) $B cp -a "$path/." / || exit 1 ;;
    files) if [ -d "$path" ]; then $B cp -R "$path/." / || exit 1; fi ;;
    export) for d in /dgr/attributes /dgr/templates; do
        if [ -e "$d" ]; then $B cp -a "$d" "$path/" || exit 1; fi
      done ;;
  esac
done
"""
STEP_MARKER = "### dgr step: "


@dataclass(frozen=True)
class Step:
    """One build step run in a sandbox: a runlevel, or a copy into the image rootfs."""

    kind: str  # runlevel | copy | files | export (/dgr/attributes and /dgr/templates to `path`)
    label: str
    path: str


class _StepLog:
    """Receives the steps' output: writes it to the build log, logs each step as it starts."""

    def __init__(self, b: _Build) -> None:
        self.out = b.log_file
        self.echo = b.options.echo
        self.current = ""
        self.started = time.monotonic()

    def write(self, text: str) -> int:
        self.out.write(text)
        if self.echo:
            sys.stderr.write(text)
        for line in text.splitlines():
            if line.startswith(STEP_MARKER):
                if self.current:
                    log.debug("%s done in %.2fs", self.current, time.monotonic() - self.started)
                self.current = line[len(STEP_MARKER) :].strip()
                self.started = time.monotonic()
                log.info("%s ...", self.current)
        return len(text)

    def flush(self) -> None:
        self.out.flush()


SHELL = ["/dgr/bin/busybox", "sh"]


def step_label(name: str) -> str:
    """The label of the step `--shell-after NAME` names: a runlevel, or `files`."""
    return "copying files" if name == "files" else f"runlevel {name}"


def run_steps(b: _Build, sandbox: Sandbox, steps: list[Step]) -> bool:
    """Run `steps` in order in one `sandbox`; BuildError naming the failing step and script.

    With `shell_after`, a debugging shell opens in the sandbox after that step (the build goes
    on when it is left; returns whether it opened); with `shell_on_failure`, after a failing
    step (the build then fails).
    """
    label = step_label(b.options.shell_after) if b.options.shell_after else None
    at = next((i + 1 for i, item in enumerate(steps) if item.label == label), 0)
    if at:
        _run_steps(b, sandbox, steps[:at])
        debug_shell(sandbox, f"{label} done")
    _run_steps(b, sandbox, steps[at:])
    return bool(at)


def debug_shell(sandbox: Sandbox, why: str) -> None:
    """An interactive shell (`busybox sh` on our stdin, stdout and stderr) in a sandbox like
    `sandbox`: the same root, overlays, mounts and environment, so it sees what the steps left.
    It runs in a session of its own, as every sandbox does: Ctrl-C clears its line but cannot
    stop a command it runs, and dgr ignores Ctrl-C meanwhile. `exit` or Ctrl-D leaves it."""
    log.warning("%s: a shell opens in its sandbox; leave it with exit or Ctrl-D", why)
    shell = replace(sandbox, env={**sandbox.env, "PS1": f"dgr ({why}) # "})
    proc = shell.spawn(SHELL)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the spawn: not inherited
    try:
        proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    finally:
        signal.signal(signal.SIGINT, interrupt)


_DISK_FULL = "No space left on device"


class _StepsTimedOut(BuildError):
    """The build's runlevels took longer than its timeout."""


def _run_steps(b: _Build, sandbox: Sandbox, steps: list[Step]) -> None:
    if not steps:
        return
    argv = ["/dgr/bin/busybox", "sh", "-c", STEPS_SCRIPT, "sh"]
    for item in steps:
        argv += [item.kind, item.label, item.path]
    sink = _StepLog(b)
    deadline = b.deadline
    timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        # With check=False, `error` is raised only on timeout.
        result = sandbox.run(
            argv, check=False, log_file=sink, keep_output=False, timeout=timeout, error=_StepsTimedOut
        )
    except _StepsTimedOut as exc:
        raise BuildError(
            f"the build timed out after {b.timeout:g}s, in {sink.current or 'a build step'}",
            path=b.manifest.path if b.manifest.path.exists() else b.project,
            key="build.timeout",
            details=strip_ansi(exc.details or ""),
            hint=f"raise build.timeout in the manifest or --timeout; full log in {b.ws.log}",
        ) from None
    if result.returncode != 0:
        script = _failed_script(strip_ansi(result.output))
        what = f"script {script}" if script else f"exit code {result.returncode}"
        if b.options.shell_on_failure:
            debug_shell(sandbox, f"{sink.current or 'build step'} failed")
        tail = strip_ansi(result.tail())
        full = "the disk is full (No space left on device): free some space; " if _DISK_FULL in tail else ""
        raise BuildError(
            f"{sink.current or 'build step'} failed: {what}",
            path=b.project,
            details=tail,
            hint=f"{full}full log in {b.ws.log}",
        )


# --- internals -------------------------------------------------------------------------------


def internals_layer(cache: Path) -> Path:
    """dgr's internals as a layer (a folder holding `dgr/`), shared by every build and
    owned by the sandboxes' root (a copy per id map, so no inode is shared between maps)."""
    from dgr.internals import build_internals

    tree = build_internals(cache)
    ids = userns.current()

    def produce(layer: Path) -> None:
        layer.chmod(0o755)
        shutil.copytree(tree, layer / "dgr", symlinks=True)
        ids.give_tree(layer)

    return cached_folder(tree.with_name(f"{tree.name}.layer-{ids.tag()}"), produce)


# --- attributes and the final manifest ----------------------------------------------------


def attribute_order(deps: tuple[Dependency, ...]) -> list[str]:
    """The attribute files the dependencies carry, lowest precedence first."""
    from dgr.templater.attributes import collect_attribute_files, read_order_file

    order: list[str] = []
    for dep in flatten(deps):
        root = dep.layer / "dgr" / "attributes"
        present = [path.relative_to(root).as_posix() for path in collect_attribute_files(root)]
        for entry in (*read_order_file(root), *present):
            if entry not in order:
                order.append(entry)
    return order


def prepare_templater(b: _Build) -> None:
    """Store the image's templater run, rendered and compiled ahead of time, in its layer
    (see dgr.templater.prepared), when the image has templates."""
    from dgr.internals import bundle_identity
    from dgr.internals_binaries import MOUNT
    from dgr.templater.prepared import FILE_NAME as PREPARED_FILE
    from dgr.templater.prepared import write_prepared

    inputs = b.ws.scratch("templater")
    if (inputs / "templates").is_dir():
        identity = bundle_identity(b.internals / "dgr")
        destination = b.ws.scratch("upper") / "dgr"
        reason = write_prepared(inputs, destination, identity=identity, directory_at_start=MOUNT)
        for path in (destination, destination / PREPARED_FILE):  # written by dgr, for the image's root
            userns.current().give(path)
        if reason:
            log.debug("templater run not prepared (rendered at every start): %s", reason)


def final_manifest(b: _Build) -> tuple[Manifest, dict[str, Any]]:
    """Render aci-manifest.yml with the attributes build scripts wrote (SPEC §3); the
    manifest, and those attributes."""
    from dgr.templater.attributes import collect_attribute_files, load_attributes

    manifest = b.manifest
    attributes: dict[str, Any] = {}
    if manifest.path.exists():
        directory = b.ws.scratch("builder-attributes")
        files = collect_attribute_files(directory)
        attributes = load_attributes(files, env={}) if files else {}
        manifest = with_oci_base(load_manifest(b.project, attributes), b.aci_deps)
    if not manifest.name.version:
        version = generate_version(b.project, epoch.from_environment())
        manifest = _with_name(manifest, manifest.name.with_version(version))
    return manifest, attributes


def manifest_of_last_build(
    manifest: Manifest, ws: Workspace, deps: tuple[Dependency, ...]
) -> Manifest | None:
    """The manifest an up-to-date build made, named as `target/manifest.json` names it:
    rendered again with the attributes its build scripts wrote (kept in the target), so
    that what depends on them (the app's environment, annotations) is what the image has.
    None when a templated manifest's attributes were not kept (a target of an older dgr)."""
    from dgr.aci import read_aci_manifest

    final = _with_name(manifest, json_manifest_name(read_aci_manifest(ws.aci)))
    if not manifest.path.exists() or not is_templated(manifest.path.read_text(encoding="utf-8")):
        return final
    try:
        attributes = json.loads((ws.target / BUILT_ATTRIBUTES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(attributes, dict):
        return None
    rendered = with_oci_base(load_manifest(manifest.project, attributes), deps)
    return _with_name(rendered, final.name)


def _with_name(manifest: Manifest, name: ImageName) -> Manifest:
    return replace(manifest, name=name)


# --- OCI images among the dependencies (dgr/ociref.py) ----------------------------------------

OCI_PINS_ANNOTATION = "dgr-oci-dependencies"


def oci_images(deps: tuple[Dependency, ...]) -> list[tuple[OciReference, StoredOciImage]]:
    """The OCI images among `deps` and everything below them, bottom first."""
    return [(d.name, d.oci) for d in flatten(deps) if d.oci is not None and isinstance(d.name, OciReference)]


def oci_base(deps: tuple[Dependency, ...]) -> tuple[OciReference, StoredOciImage] | None:
    """The OCI image nearest to the top among `deps` and everything below them (the base
    whose config an image inherits), or None."""
    images = oci_images(deps)
    return images[-1] if images else None


def with_oci_base(manifest: Manifest, deps: tuple[Dependency, ...]) -> Manifest:
    """`manifest` whose app takes from the OCI base's config what the manifest does not set:
    Env (by name), WorkingDir and User (see dgr.oci.inherit_app)."""
    from dgr.ociconfig import inherit_app

    base = oci_base(deps)
    if base is None:
        return manifest
    app = inherit_app(manifest.aci.app, base[1].config(), [d.layer for d in flatten(deps)])
    return replace(manifest, aci=replace(manifest.aci, app=app))


def with_oci_pins(manifest: Manifest, below: tuple[Dependency, ...]) -> Manifest:
    """`manifest` with an annotation naming the OCI images of `below` with their digests
    (a JSON list of `REFERENCE@sha256:...`), when there are any."""
    pins = [ref.pinned(image.digest) for ref, image in oci_images(below)]
    if not pins:
        return manifest
    kept = tuple(a for a in manifest.aci.annotations if a.name != OCI_PINS_ANNOTATION)
    pinned = NameValue(OCI_PINS_ANNOTATION, json.dumps(pins))
    return replace(manifest, aci=replace(manifest.aci, annotations=(*kept, pinned)))


# --- the pipeline ------------------------------------------------------------------------


def build(
    project: Path,
    options: BuildOptions,
    *,
    force: bool = False,
    manifest: Manifest | None = None,
    target: Path | None = None,
    extra_attributes: tuple[tuple[str, Path], ...] = (),
    resolved: Resolved | None = None,
) -> BuildResult:
    """Build the image of `project` (or return the previous result when nothing changed).

    `resolved`: its aci and builder dependencies, already built or fetched (dgr/plan.py);
    without it, build resolves them itself (dgr/resolve.py), building local ones first.

    `manifest` replaces the project's aci-manifest.yml (used for generated images such as
    the test image, whose project folder is `tests/`); `target` replaces the target folder.
    `extra_attributes` are `(name, folder)` pairs whose attribute files go to
    `/dgr/attributes/<name>/`, above the dependencies' and below the project's own (a pod's
    shared attributes, see dgr/pod.py).

    The host's refusals (disk full, read-only target...) are a HostError naming the file;
    a project that needs itself, through its dependencies, is a BuildError naming the cycle.
    """
    explicit_epoch = epoch.from_environment()  # an invalid value fails before anything is written
    if explicit_epoch is not None:  # an input: build scripts get it too (a --set-env value wins)
        options = replace(options, set_env={epoch.ENV: str(explicit_epoch), **options.set_env})
    manifest = manifest or load_manifest(project)
    if resolved is None:
        options = _check_cycle(manifest, options)
    ws = Workspace(target or target_dir(manifest, options.config, options.targets_root))
    with host_errors("build", where=ws.target):
        ws.target.mkdir(parents=True, exist_ok=True)
        with FileLock(str(ws.lock)):
            return _build_locked(manifest, options, force, ws, extra_attributes, resolved)


def _check_cycle(manifest: Manifest, options: BuildOptions) -> BuildOptions:
    """`options` for the dependencies of `manifest`'s build; a BuildError naming the cycle
    when an image that `manifest` is a dependency of is `manifest` itself (its build would
    otherwise wait forever for its own target's lock)."""
    folder = manifest.project.resolve()
    for index, (outer, _) in enumerate(options.building):
        if outer == folder:
            chain = " -> ".join([*(name for _, name in options.building[index:]), manifest.name.name])
            raise BuildError(
                f"dependency cycle: {chain}",
                path=manifest.path,
                hint="images cannot depend on each other: move what they share into a third image",
            )
    return replace(options, building=(*options.building, (folder, manifest.name.name)))


# Temporary names that writers in a target make (dgr/leftovers.py); those without an owner
# are made under the target's lock only.
TARGET_TEMPORARIES = (
    ".image.aci.",
    ".oci.",
    ".manifest.json.",
    ".version.",
    ".image.id.",
    ".builder-attributes.json.",
    ".build.json.",
    ".cp-",
    ".load-",
    "templates-",
    ".image.docker.tar.",
    ".image.oci.tar.",
)


def _build_locked(
    manifest: Manifest,
    options: BuildOptions,
    force: bool,
    ws: Workspace,
    extra_attributes: tuple[tuple[str, Path], ...],
    resolved: Resolved | None,
) -> BuildResult:
    from dgr.resolve import resolve_dependencies

    remove_stale(ws.target, *TARGET_TEMPORARIES)
    if resolved is None:
        deps = resolve_dependencies(manifest.aci.dependencies, manifest, options)
        builder_deps = resolve_dependencies(manifest.builder.dependencies, manifest, options)
    else:
        deps, builder_deps = resolved
    manifest = with_oci_base(manifest, deps)
    internals = internals_layer(options.config.cache_path)
    key = build_key(manifest, options, internals, deps, builder_deps, ws.target, extra_attributes)
    last = manifest_of_last_build(manifest, ws, deps) if not force and up_to_date(ws, key) else None
    if last is not None:
        log.info("%s up to date (%s)", last.name, ws.target)
        image_id = (ws.target / "image.id").read_text().strip()
        return BuildResult(last, last.name, ws, image_id, deps, internals, up_to_date=True)
    check_inputs(manifest.project, extra_attributes)
    prepare_mount_sources(manifest)
    ws.reset_work()
    with open(ws.log, "w", encoding="utf-8") as log_file:
        umask = os.umask(0o022)  # what dgr stages for the image gets the same modes on every host
        try:
            runlevels = stage_build_runlevels(manifest.project, ws.scratch("stages/runlevels"))
            b = _Build(
                manifest, ws, options, internals, deps, builder_deps, log_file, extra_attributes, runlevels
            )
            result = _run_pipeline(b)
        finally:
            os.umask(umask)
            if not options.keep:
                shutil.rmtree(ws.work, ignore_errors=True)
    ws.key_file.write_text(key.text())
    return result


def _run_pipeline(b: _Build) -> BuildResult:
    manifest, project, cache = b.manifest, b.project, b.options.config.cache_path
    with step(f"Building {manifest.name} in {b.ws.target}"):
        _scaffold(b)
        _make_tmp(b.ws.scratch("upper"))
        builder = b.builder_sandbox(cache)
        shell = run_steps(b, builder, builder_steps(b, "early"))
        inherit_stage = stage_inherit_runlevels(project, b.ws.scratch("stages/inherit"))
        project_stage = stage_project(
            project,
            b.ws.scratch("stages/project"),
            manifest.name.app_name,
            attribute_order(b.aci_deps),
            b.extra_attributes,
        )
        stages = tuple(s for s in (inherit_stage, project_stage) if s is not None)
        when = epoch.build_epoch(project)
        for stage in stages:
            epoch.reset_mtimes(stage, when)
        shell |= run_steps(b, b.image_sandbox(stages), image_steps(b, inherit_stage is not None))
        _drop_tmp(b.ws.scratch("upper"))
        prepare_templater(b)
        shell |= run_steps(b, builder, builder_steps(b, "late"))
        if b.options.shell_after and not shell:
            log.warning("no step %s ran (nothing to run): no shell opened", b.options.shell_after)
        final, attributes = final_manifest(b)
        image_id = package(b, final, when)
        _write_atomic(b.ws.target / BUILT_ATTRIBUTES, json.dumps(attributes, sort_keys=True, default=str))
    log.info("Finished building %s", final.name)
    return BuildResult(final, final.name, b.ws, image_id, b.aci_deps, b.internals)


def builder_steps(b: _Build, phase: str) -> list[Step]:
    """The steps in the builder root: the builder dependencies' inherit-build-early and
    the `builder` runlevel ("early"), or their inherit-build-late ("late")."""
    steps = []
    if b.builder_deps and _deps_have(b.builder_deps, f"inherit-build-{phase}"):
        steps.append(
            Step(
                "runlevel",
                f"runlevel inherit-build-{phase} (builder)",
                f"/dgr/runlevels/inherit-build-{phase}",
            )
        )
    if phase == "early" and has_scripts(b.project / "runlevels" / "builder"):
        steps.append(Step("runlevel", "runlevel builder", f"{ACI_HOME}/runlevels/builder"))
    return steps


def image_steps(b: _Build, inherits: bool) -> list[Step]:
    """The steps in the image rootfs, in the original's order (SPEC §4), empty ones left out."""
    project, runlevels = b.project / "runlevels", f"{ACI_HOME}/runlevels"
    steps = []
    if inherits:
        steps.append(Step("copy", "storing inherit runlevels", f"{STAGES_IN_IMAGE}/inherit"))
    if inherits or _deps_have(b.aci_deps, "inherit-build-early"):
        steps.append(Step("runlevel", "runlevel inherit-build-early", "/dgr/runlevels/inherit-build-early"))
    if has_scripts(project / "build"):
        steps.append(Step("runlevel", "runlevel build", f"{runlevels}/build"))
    steps.append(
        Step("copy", "copying attributes, templates and prestart runlevels", f"{STAGES_IN_IMAGE}/project")
    )
    if inside_project(b.project, "files") is not None:
        steps.append(Step("files", "copying files", f"{ACI_HOME}/files"))
    if has_scripts(project / "build-late"):
        steps.append(Step("runlevel", "runlevel build-late", f"{runlevels}/build-late"))
    if inherits or _deps_have(b.aci_deps, "inherit-build-late"):
        steps.append(Step("runlevel", "runlevel inherit-build-late", "/dgr/runlevels/inherit-build-late"))
    steps.append(Step("export", "reading the templater's inputs", TEMPLATER_INPUTS))
    return steps


def _make_tmp(upper: Path) -> None:
    """Every image gets an empty, world-writable /tmp (created before any mount)."""
    tmp = upper / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o1777)
    ids = userns.current()
    ids.give(upper)
    ids.give(tmp)


def _drop_tmp(upper: Path) -> None:
    """Remove what build steps left in /tmp: not part of the image (as in the original)."""
    tmp = upper / "tmp"
    if tmp.is_dir() and not tmp.is_symlink():
        for entry in tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _deps_have(deps: tuple[Dependency, ...], runlevel: str) -> bool:
    return any(has_scripts(d.layer / "dgr" / "runlevels" / runlevel) for d in flatten(deps))


def json_manifest_name(data: dict[str, Any]) -> ImageName:
    """The `name:version` of an appc image manifest."""
    version = next((lab["value"] for lab in data.get("labels", []) if lab.get("name") == "version"), "")
    return ImageName(str(data["name"]), str(version))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def package(b: _Build, manifest: Manifest, when: int) -> str:
    """Write image.aci, manifest.json, version, oci/ and layer/ from this build's layer, dated
    `when` (the build epoch: no file of the layer is newer, see dgr/epoch.py)."""
    from dgr import aci, metadata, oci

    # Until here a failed build left the previous outputs and their key as they were; from
    # here the outputs change one by one, and the old key no longer describes them.
    b.ws.key_file.unlink(missing_ok=True)
    b.ws.build_json.unlink(missing_ok=True)
    upper = b.ws.scratch("upper")
    name = manifest.name
    epoch.clamp_mtimes(upper, when)
    build_date = epoch.rfc3339(when)
    below = flatten(b.aci_deps)
    # An ACI cannot name an OCI image as a dependency: an image with one is a whole ACI, every
    # layer below it flattened into its rootfs (docs/store.md); images on top of it name it.
    whole = any(d.oci is not None for d in b.aci_deps)
    deps = [] if whole else [(d.name, d.image_id) for d in b.aci_deps if isinstance(d.name, ImageName)]
    manifest = with_oci_pins(manifest, below if whole else ())
    image_manifest = aci.image_manifest(
        manifest, version=name.version, dependencies=deps, dgr_version=dgr.__version__, build_date=build_date
    )
    ids = userns.current()
    with step("packaging image.aci"):
        aci_layers = [*(d.layer for d in below), b.internals, upper] if whole else [b.internals, upper]
        image_id = aci.write_aci(aci_layers, image_manifest, b.ws.aci, ids, whole=whole)
    with step("writing the OCI layout"):
        # an OCI dependency's layers are its blobs as fetched: the same digests as its source
        layers: list[oci.LayerSource | oci.LayerBlob] = [
            d.blob or oci.LayerSource(d.layer, key=d.image_id) for d in below
        ]
        layers.append(oci.LayerSource(b.internals, key=f"dgr-internals-{b.internals.name}"))
        # Remembered under the image ID (which the same layer always gives): images built on
        # this one find its blob without compressing its layer again.
        layers.append(oci.LayerSource(upper, key=image_id))
        cache = oci.BlobCache(b.options.config.cache_path / "blobs", ids)
        base = oci_base(b.aci_deps)
        oci.export_image(
            b.ws.oci,
            manifest,
            version=name.version,
            created=build_date,
            layers=layers,
            cache=cache,
            labels=oci.base_labels(str(base[0]), base[1].digest) if base else None,
            inherited_labels=oci.config_labels(base[1].config()) if base else None,
        )
    _write_atomic(b.ws.manifest_json, aci.manifest_bytes(image_manifest).decode("utf-8"))
    _write_atomic(b.ws.version_file, str(name))
    _write_atomic(b.ws.target / "image.id", image_id + "\n")
    _replace_dir(upper, b.ws.layer)
    metadata.write_build_json(b.ws, metadata.image_record(name, image_id, b.ws))
    return image_id


def _replace_dir(src: Path, dest: Path) -> None:
    """Move `src` to `dest`, replacing any previous `dest` (old one removed after the swap)."""
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.rename(dest, old)
    os.rename(src, dest)
    shutil.rmtree(old, ignore_errors=True)


def clean(project: Path, options: BuildOptions) -> Path:
    """Remove the project's target folder; returns its path."""
    manifest = load_manifest(project)
    ws = Workspace(target_dir(manifest, options.config, options.targets_root))
    if ws.target.exists():
        with host_errors("dgr clean", folder=ws.target):
            shutil.rmtree(ws.target)
    return ws.target


__all__ = ["BuildOptions", "BuildResult", "Dependency", "build", "clean", "DgrError"]
