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
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from dgr import epoch, userns
from dgr.aci import read_aci_manifest
from dgr.buildkey import build_key, up_to_date
from dgr.buildrun import BuildRun, drop_tmp, make_scaffolds, make_tmp, prepare_mount_sources
from dgr.cache import cached_folder
from dgr.errors import host_errors
from dgr.images import BuildResult, Dependency, Resolved, flatten
from dgr.internals import build_internals, bundle_identity
from dgr.internals_binaries import MOUNT
from dgr.leftovers import remove_stale
from dgr.log import log, step
from dgr.manifest import Manifest
from dgr.manifest_load import load_manifest
from dgr.manifest_template import is_templated
from dgr.names import ImageName, generate_version
from dgr.ocibase import with_oci_base
from dgr.options import BuildOptions
from dgr.package import json_manifest_name, package, write_atomic
from dgr.staging import (
    check_inputs,
    stage_build_runlevels,
    stage_inherit_runlevels,
    stage_project,
)
from dgr.steps import builder_steps, image_steps, run_steps
from dgr.templater.attributes import collect_attribute_files, load_attributes, read_order_file
from dgr.templater.prepared import FILE_NAME as PREPARED_FILE
from dgr.templater.prepared import write_prepared
from dgr.workspace import Workspace, target_dir

# In the target: the attributes the build scripts wrote, to render the manifest of an up-to-date
# build as its build did.
BUILT_ATTRIBUTES = "builder-attributes.json"


# --- internals -------------------------------------------------------------------------------


def internals_layer(cache: Path) -> Path:
    """dgr's internals as a layer (a folder holding `dgr/`), shared by every build and
    owned by the sandboxes' root (a copy per id map, so no inode is shared between maps)."""
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
    order: list[str] = []
    for dep in flatten(deps):
        root = dep.layer / "dgr" / "attributes"
        present = [path.relative_to(root).as_posix() for path in collect_attribute_files(root)]
        for entry in (*read_order_file(root), *present):
            if entry not in order:
                order.append(entry)
    return order


def prepare_templater(b: BuildRun) -> None:
    """Store the image's templater run, rendered and compiled ahead of time, in its layer
    (see dgr.templater.prepared), when the image has templates."""
    inputs = b.ws.scratch("templater")
    if (inputs / "templates").is_dir():
        identity = bundle_identity(b.internals / "dgr")
        destination = b.ws.scratch("upper") / "dgr"
        reason = write_prepared(inputs, destination, identity=identity, directory_at_start=MOUNT)
        for path in (destination, destination / PREPARED_FILE):  # written by dgr, for the image's root
            userns.current().give(path)
        if reason:
            log.debug("templater run not prepared (rendered at every start): %s", reason)


def final_manifest(b: BuildRun) -> tuple[Manifest, dict[str, Any]]:
    """Render aci-manifest.yml with the attributes build scripts wrote (SPEC §3); the
    manifest, and those attributes."""
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


# --- the pipeline ------------------------------------------------------------------------


def build(
    project: Path,
    options: BuildOptions,
    *,
    resolved: Resolved = ((), ()),
    force: bool = False,
    manifest: Manifest | None = None,
    target: Path | None = None,
    extra_attributes: tuple[tuple[str, Path], ...] = (),
) -> BuildResult:
    """Build the image of `project` (or return the previous result when nothing changed).

    `resolved`: its aci and builder dependencies, already built or fetched, in the order its
    manifest lists them; a build never resolves or builds another image itself (the plan
    does, dgr/plan.py: `plan_build_image` builds a project with what it needs).

    `manifest` replaces the project's aci-manifest.yml (used for generated images such as
    the test image, whose project folder is `tests/`); `target` replaces the target folder.
    `extra_attributes` are `(name, folder)` pairs whose attribute files go to
    `/dgr/attributes/<name>/`, above the dependencies' and below the project's own (a pod's
    shared attributes, see dgr/pod.py).

    The host's refusals (disk full, read-only target...) are a HostError naming the file.
    """
    explicit_epoch = epoch.from_environment()  # an invalid value fails before anything is written
    if explicit_epoch is not None:  # an input: build scripts get it too (a --set-env value wins)
        options = replace(options, set_env={epoch.ENV: str(explicit_epoch), **options.set_env})
    manifest = manifest or load_manifest(project)
    _check_resolved(manifest, resolved)
    ws = Workspace(target or target_dir(manifest, options.config, options.targets_root))
    with host_errors("build", where=ws.target):
        ws.target.mkdir(parents=True, exist_ok=True)
        with FileLock(str(ws.lock)):
            return _build_locked(manifest, options, force, ws, extra_attributes, resolved)


def _check_resolved(manifest: Manifest, resolved: Resolved) -> None:
    """A caller's mistake, not a user's: dependencies the manifest lists but nobody resolved."""
    deps, builder_deps = resolved
    aci, builder = manifest.aci.dependencies, manifest.builder.dependencies
    if len(deps) != len(aci) or len(builder_deps) != len(builder):
        raise ValueError(
            f"{manifest.name}: build() needs its {len(aci)} aci and {len(builder)} builder "
            "dependencies resolved (dgr.plan.plan_build_image)"
        )


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
    resolved: Resolved,
) -> BuildResult:
    remove_stale(ws.target, *TARGET_TEMPORARIES)
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
            b = BuildRun(
                manifest, ws, options, internals, deps, builder_deps, log_file, extra_attributes, runlevels
            )
            result = _run_pipeline(b)
        finally:
            os.umask(umask)
            if not options.keep:
                shutil.rmtree(ws.work, ignore_errors=True)
    ws.key_file.write_text(key.text())
    return result


def _run_pipeline(b: BuildRun) -> BuildResult:
    manifest, project, cache = b.manifest, b.project, b.options.config.cache_path
    with step(f"Building {manifest.name} in {b.ws.target}"):
        make_scaffolds(b)
        make_tmp(b.ws.scratch("upper"))
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
        drop_tmp(b.ws.scratch("upper"))
        prepare_templater(b)
        shell |= run_steps(b, builder, builder_steps(b, "late"))
        if b.options.shell_after and not shell:
            log.warning("no step %s ran (nothing to run): no shell opened", b.options.shell_after)
        final, attributes = final_manifest(b)
        image_id = package(b, final, when)
        write_atomic(b.ws.target / BUILT_ATTRIBUTES, json.dumps(attributes, sort_keys=True, default=str))
    log.info("Finished building %s", final.name)
    return BuildResult(final, final.name, b.ws, image_id, b.aci_deps, b.internals)


def clean(project: Path, options: BuildOptions) -> Path:
    """Remove the project's target folder; returns its path."""
    manifest = load_manifest(project)
    ws = Workspace(target_dir(manifest, options.config, options.targets_root))
    if ws.target.exists():
        with host_errors("dgr clean", folder=ws.target):
            shutil.rmtree(ws.target)
    return ws.target


__all__ = ["build", "clean", "internals_layer"]
