"""Pods (SPEC §10): the apps of one `pod-manifest.yml`, built, run and tested together.

Data flows one way: `pod-manifest.yml` → :class:`PodManifest` (dgr/podmanifest.py) → one
image per app (built with :func:`dgr.build.build` from a generated manifest) →
:class:`PodBuild` (dgr/podbuild.py) → the appc pod manifest
(`target/pod-manifest.json`), the Kubernetes export (`target/pod.kube.yml`, dgr/kube.py), and
running pods (`start_pod` for `dgr run`, `start_test_pod` for the tests).

Each app becomes the image `<pod name>-<app name>` (an appc identifier; the original's `_`
is not one). Its project folder (ACI_HOME) is `<pod>/aci-<app>/` when it exists (attributes,
files, templates, runlevels that adapt the app's image for this pod), else an empty folder
generated under the pod target. Its manifest inherits `app` (exec, user, group, environment,
ports, mount points...) from the first dependency, as the original's `inheritDependencyPolicy:
first`, with the pod manifest's `app` keys on top. The pod's own `attributes/` land in every
app image at `/dgr/attributes/pod/`, above the images' attributes and below the app folder's.

Running a built pod is dgr/podrun.py, starting it for its tests dgr/podtest.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from dgr.aci import AC_VERSION
from dgr.build import build
from dgr.epoch import from_environment
from dgr.errors import BuildError, DgrError, ManifestError
from dgr.images import Dependency, flatten
from dgr.kube import write_kube
from dgr.log import log, step
from dgr.manifest import (
    ACI_MANIFEST,
    POD_MANIFEST,
    Aci,
    App,
    Manifest,
    NameValue,
)
from dgr.manifest_reader import ManifestReader
from dgr.names import generate_version
from dgr.ociconfig import app_of_config
from dgr.options import BuildOptions
from dgr.podbuild import AppBuild, PodBuild, app_mounts, host_source
from dgr.podmanifest import (
    APP_FIELDS,
    PodApp,
    PodManifest,
    PodVolume,
    load_pod_manifest,
    parse_pod_manifest,
)
from dgr.resolve import ORIGIN_FILE
from dgr.templatecheck import check_templates
from dgr.workspace import target_dir

POD_ATTRIBUTES = "pod"  # /dgr/attributes/pod/ in every app image
# written by builds, not inherited
DGR_ANNOTATIONS = ("dgr-version", "build-date", "dgr-oci-dependencies")


# --- building --------------------------------------------------------------------------------


def pod_target(pod: PodManifest, options: BuildOptions) -> Path:
    """`<pod>/target`, or `<targetWorkDir>/<pod short name>` (as for images)."""

    return target_dir(Manifest(name=pod.name, path=pod.path), options.config, options.targets_root)


def app_folder(pod: PodManifest, app: PodApp) -> Path | None:
    """The app's own folder in the pod: `aci-<app>/` (or `<app>/` for an app named `aci-...`)."""
    for name in (f"aci-{app.name}", app.name if app.name.startswith("aci-") else ""):
        if name and (pod.project / name).is_dir():
            folder = pod.project / name
            if (folder / ACI_MANIFEST).exists():
                raise ManifestError(
                    f"{name}/ is an app folder of the pod: its manifest comes from {POD_MANIFEST}",
                    path=folder / ACI_MANIFEST,
                    hint=f"remove it; set the app's exec, environment... under `app:` in {POD_MANIFEST}",
                )
            return folder
    return None


def app_home(pod: PodManifest, app: PodApp, target: Path) -> Path:
    """The app's project folder: its own, or an empty one generated under the pod target."""

    folder = app_folder(pod, app)
    if folder is not None:
        return folder
    home = target / "apps" / app.name
    home.mkdir(parents=True, exist_ok=True)
    # Dependencies resolve from the pod's repository, not from wherever the target is.
    origin = home / ORIGIN_FILE
    if not origin.is_file() or origin.read_text(encoding="utf-8") != str(pod.project):
        origin.write_text(str(pod.project), encoding="utf-8")
    return home


def app_manifest(
    pod: PodManifest,
    app: PodApp,
    home: Path,
    *,
    inherited: App | None = None,
    annotations: tuple[NameValue, ...] = (),
) -> Manifest:
    """The generated manifest of the app's image (`inherited`: the app it inherits)."""
    return Manifest(
        name=pod.image_name(app),
        path=home / ACI_MANIFEST,
        aci=Aci(
            dependencies=app.dependencies,
            annotations=_merge_named(annotations, app.annotations),
            app=merge_app(inherited or App(), app),
        ),
    )


def merge_app(inherited: App, app: PodApp) -> App:
    """`inherited` with the keys the pod manifest sets; environment merges by name."""
    changes = {attr: getattr(app.app, attr) for key, attr in APP_FIELDS.items() if key in app.overridden}
    if "environment" in app.overridden:
        changes["environment"] = _merge_named(inherited.environment, app.app.environment)
    return replace(inherited, **changes, given=tuple(sorted({*inherited.given, *app.overridden})))


def _merge_named(base: Sequence[NameValue], top: Sequence[NameValue]) -> tuple[NameValue, ...]:
    merged = {item.name: item for item in base}
    merged.update({item.name: item for item in top})
    return tuple(merged.values())


def dependency_manifest(dep: Dependency) -> dict[str, Any]:
    """The appc image manifest of a resolved dependency (next to its layer, in the store
    as in a project's target)."""
    path = dep.layer.parent / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read the manifest of {dep.name}: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise BuildError(f"the manifest of {dep.name} is not a JSON object", path=path)
    return data


def inherited_app(dep: Dependency) -> tuple[App, tuple[NameValue, ...]]:
    """The `app` and annotations of a dependency's manifest (dgr's own annotations left out);
    of an OCI image: its command, ports, Env, WorkingDir and User (dgr.oci.inherit_app)."""
    if dep.oci is not None:
        return app_of_config(dep.oci.config(), [d.layer for d in flatten((dep,))]), ()
    data = dependency_manifest(dep)
    reader = ManifestReader(dep.layer.parent / "manifest.json")
    raw = {k: v for k, v in (data.get("app") or {}).items() if k != "eventHandlers"}
    annotations = reader.name_values(data.get("annotations"), "annotations")
    return reader.app(raw, "app"), tuple(a for a in annotations if a.name not in DGR_ANNOTATIONS)


def build_app(
    pod: PodManifest,
    app: PodApp,
    target: Path,
    options: BuildOptions,
    *,
    resolved: tuple[Dependency, ...],
    force: bool = False,
) -> AppBuild:
    """Build the image of one app (incremental like any image); `resolved`: its
    dependencies, already built or fetched (dgr/plan.py)."""
    home = app_home(pod, app, target)
    inherited, annotations = App(), tuple[NameValue, ...]()
    if app.inherit_from is not None:
        inherit = resolved[0] if app.inherit == "first" else resolved[-1]
        inherited, annotations = inherited_app(inherit)
    manifest = app_manifest(pod, app, home, inherited=inherited, annotations=annotations)
    extra: tuple[tuple[str, Path], ...] = ()
    if (pod.project / "attributes").is_dir():
        extra = ((POD_ATTRIBUTES, pod.project / "attributes"),)
    result = build(
        home,
        options,
        force=force,
        manifest=manifest,
        extra_attributes=extra,
        resolved=(resolved, ()),
    )
    return AppBuild(app, result)


def build_pod(
    project: Path,
    options: BuildOptions,
    *,
    pod: PodManifest,
    resolved: Mapping[str, tuple[Dependency, ...]],
    force: bool = False,
) -> PodBuild:
    """Build every app of the pod at `project`, then write the pod manifest and the
    Kubernetes export. Apps build one after the other; all failures are reported.
    `pod` and `resolved` (each app's dependencies by app name): what its plan found
    (dgr/plan.py: `plan_build_pod` plans and builds a pod)."""

    target = pod_target(pod, options)
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".lock")), step(f"Building pod {pod.name} ({len(pod.apps)} apps)"):
        apps: list[AppBuild] = []
        failures: list[tuple[str, DgrError]] = []
        for app in pod.apps:
            try:
                apps.append(build_app(pod, app, target, options, resolved=resolved[app.name], force=force))
            except DgrError as exc:
                log.error("app %s of pod %s failed: %s", app.name, pod.name, exc)
                failures.append((app.name, exc))
        if len(failures) == 1:
            raise failures[0][1]
        if failures:
            names = ", ".join(name for name, _ in failures)
            raise BuildError(
                f"builds of {len(failures)} apps of pod {pod.name} failed: {names}",
                path=pod.path,
                details="\n".join(f"{name}: {exc}" for name, exc in failures),
            )
        version = pod.name.version or generate_version(project, from_environment())
        built = PodBuild(pod, version, target, tuple(apps))
        check_ports(built)
        _write_atomic(built.manifest_json, json.dumps(pod_manifest_json(built), indent=2) + "\n")
        _write_atomic(target / "version", f"{pod.name.with_version(version)}\n")
        write_kube(built)
    log.info("Pod %s: %s", pod.name, ", ".join(str(a.result.name) for a in apps))
    return built


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_ports(built: PodBuild) -> None:
    """Each `pod.ports` entry must name a port of one of the apps."""
    names = {p.name for a in built.apps for p in a.runtime_app.ports}
    for i, port in enumerate(built.pod.ports):
        if port.name not in names:
            raise ManifestError(
                f"pod.ports[{i}].name {port.name!r} is not a port of any app",
                path=built.pod.path,
                key=f"pod.ports[{i}].name",
                hint=f"app ports: {', '.join(sorted(names)) or 'none'}",
            )


def pod_manifest_json(built: PodBuild) -> dict[str, Any]:
    """The appc PodManifest of a built pod (reified: every app by image ID)."""

    pod = built.pod
    apps = []
    for app in built.apps:
        image = json.loads(app.result.workspace.manifest_json.read_text(encoding="utf-8"))
        labels = [lab for lab in image.get("labels", []) if lab.get("name") in ("version", "os", "arch")]
        entry: dict[str, Any] = {
            "name": app.name,
            "image": {"name": image["name"], "id": app.result.image_id, "labels": labels},
            "app": image["app"],
        }
        mounts = [{"volume": volume.name, "path": path} for volume, path, _ in app_mounts(pod, app)]
        if mounts:
            entry["mounts"] = mounts
        if app.app.annotations:
            entry["annotations"] = _pairs(app.app.annotations)
        apps.append(entry)
    return {
        "acVersion": AC_VERSION,
        "acKind": "PodManifest",
        "apps": apps,
        "volumes": [_volume_json(pod, v) for v in pod.volumes],
        "isolators": [{"name": i.name, "value": i.value} for i in pod.isolators],
        "annotations": _pairs(pod.annotations),
        "ports": [
            {"name": p.name, "hostPort": p.host_port, **({"hostIP": p.host_ip} if p.host_ip else {})}
            for p in pod.ports
        ],
    }


def _pairs(items: Sequence[NameValue]) -> list[dict[str, str]]:
    return [{"name": item.name, "value": item.value} for item in items]


def _volume_json(pod: PodManifest, volume: PodVolume) -> dict[str, Any]:
    result: dict[str, Any] = {"name": volume.name, "kind": volume.kind}
    if volume.kind == "host":
        result["source"] = str(host_source(pod, volume))
        if volume.recursive is not None:
            result["recursive"] = volume.recursive
    else:
        result.update(mode=volume.mode, uid=volume.uid, gid=volume.gid)
    if volume.read_only:
        result["readOnly"] = True
    return result


def clean_pod(project: Path, options: BuildOptions) -> list[Path]:
    """Remove each app's target and the pod target; returns the folders removed."""

    pod = load_pod_manifest(project)
    target = pod_target(pod, options)
    removed = []
    for app in pod.apps:
        folder = app_folder(pod, app)
        if folder is not None:
            manifest = app_manifest(pod, app, folder)
            app_target = target_dir(manifest, options.config, options.targets_root)
            if app_target.exists():
                shutil.rmtree(app_target)
                removed.append(app_target)
    if target.exists():
        shutil.rmtree(target)
        removed.append(target)
    return removed


def app_manifests(project: Path, options: BuildOptions) -> list[tuple[Manifest, Path]]:
    """Each app's generated manifest (not inherited: no dependency is resolved) and target."""

    pod = load_pod_manifest(project)
    target = pod_target(pod, options)
    result = []
    for app in pod.apps:
        manifest = app_manifest(pod, app, app_home(pod, app, target))
        result.append((manifest, target_dir(manifest, options.config, options.targets_root)))
    return result


def try_pod(built: PodBuild, show: Any = print) -> Path:
    """`dgr try` on a built pod (its plan built what changed): render each app's templates
    (the images' and the app folder's) with its attributes into `<pod target>/try/<app>/`."""

    out = built.target / "try"
    shutil.rmtree(out, ignore_errors=True)
    for app in built.apps:
        work = out / app.name
        check_templates(app.result, work)
        rendered = work / "rendered" / "default"
        for path in sorted(p for p in rendered.rglob("*") if p.is_file()):
            show(f"--- {app.name}: /{path.relative_to(rendered)}")
            show(path.read_text(errors="replace").rstrip("\n"))
    return out


__all__ = [
    "AppBuild",
    "PodApp",
    "PodBuild",
    "PodManifest",
    "build_pod",
    "clean_pod",
    "load_pod_manifest",
    "parse_pod_manifest",
]
