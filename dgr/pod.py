"""Pods (SPEC §10): the apps of one `pod-manifest.yml`, built, run and tested together.

Data flows one way: `pod-manifest.yml` → :class:`PodManifest` (dgr/podmanifest.py) → one
image per app (built with :func:`dgr.build.build` from a generated manifest) →
:class:`PodBuild` → the appc pod manifest
(`target/pod-manifest.json`), the Kubernetes export (`target/pod.kube.yml`, dgr/kube.py), and
running pods (:func:`start_pod` for `dgr run`, :func:`start_test_pod` for the tests).

Each app becomes the image `<pod name>-<app name>` (an appc identifier; the original's `_`
is not one). Its project folder (ACI_HOME) is `<pod>/aci-<app>/` when it exists (attributes,
files, templates, runlevels that adapt the app's image for this pod), else an empty folder
generated under the pod target. Its manifest inherits `app` (exec, user, group, environment,
ports, mount points...) from the first dependency, as the original's `inheritDependencyPolicy:
first`, with the pod manifest's `app` keys on top. The pod's own `attributes/` land in every
app image at `/dgr/attributes/pod/`, above the images' attributes and below the app folder's.

Running: a small *holder* container (busybox only) owns the pod's network namespace and every
app's container joins it (`nsenter --net` in front of its sandbox, see dgr/sandbox.py), so the
apps reach each other on 127.0.0.1. Every container is bubblewrap with `--die-with-parent`,
with dgr as its parent: when dgr stops, even on SIGKILL, every process goes, and the namespace
with its last process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from filelock import FileLock

from dgr import userns
from dgr.epoch import from_environment
from dgr.errors import BuildError, ContainerError, DgrError, ManifestError
from dgr.kube import write_kube
from dgr.leftovers import make_dir
from dgr.log import level_name, log, step
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
from dgr.podbuild import AppBuild, PodBuild, app_mounts, host_source
from dgr.podmanifest import (
    APP_FIELDS,
    PodApp,
    PodManifest,
    PodVolume,
    load_pod_manifest,
    parse_pod_manifest,
)

if TYPE_CHECKING:
    from dgr.build import BuildOptions, Dependency
    from dgr.container import Container, Volume
    from dgr.tester import TesterContainer, TesterOptions

POD_ATTRIBUTES = "pod"  # /dgr/attributes/pod/ in every app image
# written by builds, not inherited
DGR_ANNOTATIONS = ("dgr-version", "build-date", "dgr-oci-dependencies")
BUSYBOX = "/dgr/bin/busybox"
# The holder of the pod's network namespace: busybox only, sleeping until stopped.
HOLD = "while :; do /dgr/bin/busybox sleep 3600; done"


# --- building --------------------------------------------------------------------------------


def pod_target(pod: PodManifest, options: BuildOptions) -> Path:
    """`<pod>/target`, or `<targetWorkDir>/<pod short name>` (as for images)."""
    from dgr.workspace import target_dir

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
    from dgr.resolve import ORIGIN_FILE

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
        from dgr.build import flatten
        from dgr.ociconfig import app_of_config

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
    force: bool = False,
    resolved: tuple[Dependency, ...] | None = None,
) -> AppBuild:
    """Build the image of one app (incremental like any image); `resolved`: its
    dependencies, already built or fetched (dgr/plan.py), else resolved here."""
    from dgr.build import build
    from dgr.resolve import resolve_one

    home = app_home(pod, app, target)
    inherited, annotations = App(), tuple[NameValue, ...]()
    if app.inherit_from is not None:
        if resolved is not None:
            inherit = resolved[0] if app.inherit == "first" else resolved[-1]
        else:
            inherit = resolve_one(app.inherit_from, app_manifest(pod, app, home), options)
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
        resolved=None if resolved is None else (resolved, ()),
    )
    return AppBuild(app, result)


def build_pod(
    project: Path,
    options: BuildOptions,
    *,
    force: bool = False,
    pod: PodManifest | None = None,
    resolved: Mapping[str, tuple[Dependency, ...]] | None = None,
) -> PodBuild:
    """Build every app of the pod at `project`, then write the pod manifest and the
    Kubernetes export. Apps build one after the other; all failures are reported.
    `pod` and `resolved` (each app's dependencies by app name): what a plan found."""

    pod = pod or load_pod_manifest(project)
    target = pod_target(pod, options)
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".lock")), step(f"Building pod {pod.name} ({len(pod.apps)} apps)"):
        apps: list[AppBuild] = []
        failures: list[tuple[str, DgrError]] = []
        for app in pod.apps:
            try:
                deps = None if resolved is None else resolved[app.name]
                apps.append(build_app(pod, app, target, options, force=force, resolved=deps))
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
    from dgr.aci import AC_VERSION

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
    from dgr.workspace import target_dir

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
    from dgr.workspace import target_dir

    pod = load_pod_manifest(project)
    target = pod_target(pod, options)
    result = []
    for app in pod.apps:
        manifest = app_manifest(pod, app, app_home(pod, app, target))
        result.append((manifest, target_dir(manifest, options.config, options.targets_root)))
    return result


def try_pod(project: Path, options: BuildOptions, show: Any = print) -> Path:
    """`dgr try` on a pod: build what changed, then render each app's templates (the images'
    and the app folder's) with its attributes into `<pod target>/try/<app>/`."""
    from dgr.tester import check_templates

    built = build_pod(project, options)
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


# --- running ---------------------------------------------------------------------------------


def holder_spec(pod: PodManifest, options: BuildOptions) -> Any:
    """The container that owns the pod's network namespace: busybox, asleep."""
    from dgr.build import internals_layer
    from dgr.container import ContainerSpec

    return ContainerSpec(
        name=pod.ac_name,
        layers=(internals_layer(options.config.cache_path),),
        exec=(BUSYBOX, "sh", "-c", HOLD),
        prestart=False,
    )


def netns_of(container: Container) -> str:
    """The network namespace of a started container, as a path another sandbox can join."""
    return f"/proc/{container.init_pid()}/ns/net"


def runtime_volumes(pod: PodManifest, app: AppBuild, state: Path) -> tuple[Volume, ...]:
    """The host folders of the app's mounts; `empty` volumes are folders of this run."""
    from dgr.container import Volume

    volumes = []
    for volume, path, read_only in app_mounts(pod, app):
        if volume.kind == "host":
            source = host_source(pod, volume)
            if not source.exists():
                raise ContainerError(f"volume {volume.name}: {source} does not exist", path=pod.path)
        else:
            source = state / "volumes" / volume.name
            if not source.exists():
                source.mkdir(parents=True)
                os.chmod(source, int(volume.mode, 8))
                ids = userns.current()
                os.chown(source, ids.host_uid(volume.uid), ids.host_gid(volume.gid))
        volumes.append(Volume(source, path, read_only))
    return tuple(volumes)


class RunningPod:
    """The started containers of a pod (`dgr run`): the holder, then every app."""

    def __init__(self, holder: Container | None, apps: dict[str, Container], state: Path) -> None:
        self.holder = holder
        self.apps = apps
        self.state = state

    def __getitem__(self, name: str) -> Container:
        return self.apps[name]

    def running(self) -> list[str]:
        return [name for name, c in self.apps.items() if c.running()]

    def follow(self, out: IO[str] | None = None, poll: float = 0.1) -> int:
        """Print every app's output, each line prefixed with the app's name, until all apps
        have exited; returns the first non-zero exit code (in app order), else 0."""
        out = out or sys.stdout
        offsets = dict.fromkeys(self.apps, 0)
        width = max(len(name) for name in self.apps)
        while True:
            alive = self.running()
            for name, container in self.apps.items():
                offsets[name] = _print_new(container.log_path, offsets[name], f"{name:<{width}} | ", out)
            if not alive:
                break
            time.sleep(poll)
        codes = [c.wait() for c in self.apps.values()]
        return next((code for code in codes if code != 0), 0)

    def stop(self) -> None:
        """Stop every app, then the holder (the namespace goes with its last process)."""
        for container in self.apps.values():
            container.stop()
        if self.holder is not None:
            self.holder.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> RunningPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _print_new(path: Path, offset: int, prefix: str, out: IO[str]) -> int:
    """Print the complete lines `path` got since `offset`; the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        out.write(f"{prefix}{line}\n")
    out.flush()
    return offset + end


def start_pod(
    built: PodBuild,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    override: str | None = None,
    host_network: bool = False,
) -> RunningPod:
    """Start every app of `built` (prestart included) in one network namespace."""
    from dgr.container import Container, image_spec

    pod = built.pod
    state = make_dir(None, "dgr-pod-", suffix=f"-{pod.ac_name}")
    environment = dict(env or {})
    if override is not None:
        environment["TEMPLATER_OVERRIDE"] = override
    holder: Container | None = None
    apps: dict[str, Container] = {}
    running = RunningPod(holder, apps, state)
    try:
        netns = None
        if not host_network:
            holder = running.holder = Container(holder_spec(pod, options), state_dir=state / "holder")
            holder.start()
            netns = netns_of(holder)
        for app in built.apps:
            spec = image_spec(
                app.result,
                env=environment,
                volumes=runtime_volumes(pod, app, state),
                host_network=host_network,
            )
            container = Container(replace(spec, name=app.name, netns=netns), state_dir=state / app.name)
            apps[app.name] = container.start()
            log.info("Started app %s of pod %s", app.name, pod.name)
    except BaseException:
        running.stop()
        raise
    return running


def run_pod(
    built: PodBuild,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    override: str | None = None,
    host_network: bool = False,
) -> int:
    """`dgr run` on a pod: start it, show the apps' output until they all exit, stop it."""
    with start_pod(built, options, env=env, override=override, host_network=host_network) as running:
        return running.follow()


# --- testing ---------------------------------------------------------------------------------


class TestPod:
    """A pod started for its tests: the pod's tester container (which owns the network
    namespace and holds `<pod>/tests`, bats and busybox) and each app's test container."""

    __test__ = False  # not a pytest test class

    def __init__(self, tester: TesterContainer, apps: dict[str, TesterContainer]) -> None:
        self.tester = tester
        self.apps = apps

    def __getitem__(self, name: str) -> TesterContainer:
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(self.apps)
            raise ContainerError(f"no app named {name!r} in this pod (apps: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.apps)

    def stop(self) -> None:
        for container in self.apps.values():
            container.stop()
        self.tester.stop()

    def __enter__(self) -> TestPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_test_pod(built: PodBuild, options: BuildOptions, tester: TesterOptions | None = None) -> TestPod:
    """Start the pod for its tests: the tester first (it owns the network namespace), then
    each app's test container (prestart done, app started, its own wait.sh polled), then the
    pod's `tests/wait.sh` is polled from the tester."""
    from dgr.build import internals_layer
    from dgr.container import Container, ContainerSpec, Volume
    from dgr.tester import (
        KEEPER,
        RUN_PREFIX,
        STATUS_IN_IMAGE,
        TesterContainer,
        TesterOptions,
        bats_layer,
        files_layer,
        make_status_dir,
        start_test_container,
    )

    tester = tester or TesterOptions(keep=options.keep)
    pod = built.pod
    base = built.target / "tests"
    base.mkdir(parents=True, exist_ok=True)
    run_dir = make_dir(base, RUN_PREFIX)
    internals = internals_layer(options.config.cache_path)
    try:
        files = files_layer(pod.project / "tests", run_dir / "layer", (internals,))
        status = make_status_dir(run_dir)
        env = {"TESTER": "TRUE", "LOG_LEVEL": level_name(options.log_level), **tester.extra_env}
        spec = ContainerSpec(
            name=pod.ac_name,
            layers=(internals, bats_layer(options.config.cache_path), files),
            exec=(BUSYBOX, "sh", "-c", KEEPER, "keeper", BUSYBOX, "true"),
            env=env,
            volumes=(Volume(status, STATUS_IN_IMAGE),),
            prestart=False,
        )
        container = Container(spec, state_dir=run_dir / "container", keep=tester.keep)
        ports = [p for app in built.apps for p in app.runtime_app.ports]
        holder = TesterContainer(container, run_dir, pod.project, tester, ports)
        container.start()
    except BaseException:
        if not tester.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    running = TestPod(holder, {})
    try:
        holder.wait_started()
        netns = netns_of(container)
        for app in built.apps:
            log.info("Starting app %s of pod %s", app.name, pod.name)
            running.apps[app.name] = start_test_container(
                app.result, options, tester, name=app.name, netns=netns
            )
        for app_container in running.apps.values():
            app_container.wait_ready()
        holder.wait_ready()
    except BaseException:
        running.stop()
        raise
    return running


__all__ = [
    "AppBuild",
    "PodApp",
    "PodBuild",
    "PodManifest",
    "RunningPod",
    "TestPod",
    "build_pod",
    "clean_pod",
    "load_pod_manifest",
    "parse_pod_manifest",
    "run_pod",
    "start_pod",
    "start_test_pod",
]
