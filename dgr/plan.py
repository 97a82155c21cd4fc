"""The plan: a project (image or pod) resolved into its whole image graph once, before
anything is built (SPEC §9).

Every image the project needs is one `Node`, named by a key and saying where it comes from
(`Source`): the store (the walk stops there), a project folder of the same repository
(its own dependencies are walked), appc discovery or an OCI reference (fetched when the
plan is carried out), the generated test image (when `tests/` customises it) or a pod's
app. Nodes are in dependency order (graphlib); a cycle is one BuildError naming it whole.
Each manifest of the repository is loaded once per plan.
"""

from __future__ import annotations

import enum
import graphlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dgr.build import build
from dgr.config import Config
from dgr.errors import BuildError, DgrError
from dgr.images import BuildResult, Dependency
from dgr.manifest import ACI_MANIFEST, POD_MANIFEST, Manifest
from dgr.manifest_load import load_manifest
from dgr.names import ImageName
from dgr.newer_versions import newer_version_checks
from dgr.options import BuildOptions
from dgr.pod import PodBuild, app_folder, build_pod
from dgr.podmanifest import PodManifest, load_pod_manifest
from dgr.reference import OciReference, Reference
from dgr.resolve import fetch, find_local_project, from_store
from dgr.store import Store, StoredImage
from dgr.testimage import TESTS_TARGET, TestImage, generated_test_manifest, needs_test_build


class Source(enum.Enum):
    """Where a node's image comes from."""

    STORE = "store"
    PROJECT = "project"  # a project folder of the repository, built
    DISCOVERY = "discovery"  # appc discovery, fetched
    OCI = "oci"  # an OCI reference, fetched
    TESTS = "tests"  # the generated test image of a project (its tests/ folder), built
    POD_APP = "pod app"  # an app of a pod, built from a generated manifest


@dataclass(frozen=True)
class Node:
    """One image of the plan and the keys of the nodes it needs, by kind."""

    key: str
    name: Reference
    source: Source
    project: Path | None = None  # PROJECT, TESTS: its folder; POD_APP: its own folder, if any
    manifest: Manifest | None = None  # PROJECT, TESTS (the tested image's manifest)
    stored: StoredImage | None = None  # STORE
    where: Path | None = None  # OCI, DISCOVERY: the first manifest that needs it (for errors)
    # PROJECT: the versions dependents ask for, with the manifest asking (checked once built:
    # a manifest without a version gets one at build time)
    asked: tuple[tuple[str, Path], ...] = ()
    aci: tuple[str, ...] = ()
    builder: tuple[str, ...] = ()
    tester: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.aci, *self.builder, *self.tester)))

    @property
    def built(self) -> bool:
        return self.source in (Source.PROJECT, Source.TESTS, Source.POD_APP)


@dataclass(frozen=True)
class Plan:
    """The nodes a project needs, dependencies before dependents; `roots` are the keys of
    the project's own images (the image, or every app of a pod)."""

    project: Path
    nodes: tuple[Node, ...]
    roots: tuple[str, ...]
    pod: PodManifest | None = None
    manifest_loads: int = field(default=0, compare=False)  # how many manifests were read

    def __getitem__(self, key: str) -> Node:
        for node in self.nodes:
            if node.key == key:
                return node
        raise KeyError(key)

    def closure(self, keys: tuple[str, ...]) -> tuple[Node, ...]:
        """The nodes `keys` and every node they need, in plan order."""
        wanted: set[str] = set()
        todo = list(keys)
        while todo:
            current = todo.pop()
            if current not in wanted:
                wanted.add(current)
                todo.extend(self[current].needs)
        return tuple(node for node in self.nodes if node.key in wanted)

    def test_node(self, key: str) -> Node | None:
        """The generated test image of the image `key`, if its tests/ customise one."""
        return next((n for n in self.nodes if n.source is Source.TESTS and key in n.aci), None)


def short_name(name: Reference) -> str:
    return name.name if isinstance(name, ImageName) else str(name)


def project_key(folder: Path) -> str:
    return str(folder.resolve())


def tests_key(folder: Path) -> str:
    return str(folder.resolve() / "tests")


def app_key(pod: PodManifest, app: str) -> str:
    return f"{pod.project.resolve()}#{app}"


class _Repository:
    """The manifests of a repository, each loaded once (broken ones left out, as resolve does)."""

    def __init__(self) -> None:
        self.manifests: dict[Path, Manifest | DgrError] = {}
        self.loads = 0

    def manifest(self, folder: Path) -> Manifest:
        folder = folder.resolve()
        if folder not in self.manifests:
            self.loads += 1
            try:
                self.manifests[folder] = load_manifest(folder)
            except DgrError as exc:
                self.manifests[folder] = exc
        found = self.manifests[folder]
        if isinstance(found, DgrError):
            raise found
        return found

    def find(self, name: ImageName, near: Path) -> Path | None:
        """The project folder of `near`'s repository that builds `name` (not `near`)."""
        folder = find_local_project(name, near, load=self.manifest)
        return folder.resolve() if folder is not None else None


class _Planner:
    def __init__(self, config: Config) -> None:
        self.store = Store(config.store_path)
        self.repo = _Repository()
        self.nodes: dict[str, Node] = {}
        self.paths: dict[str, Path] = {}  # key → the manifest that declares it (for errors)

    def project(self, folder: Path) -> str:
        key = project_key(folder)
        if key in self.nodes:
            return key
        manifest = self.repo.manifest(folder)
        # Visited from here on: a cycle that comes back to this folder is found by the sort.
        self.nodes[key] = Node(key, manifest.name, Source.PROJECT, folder.resolve(), manifest)
        self.paths[key] = manifest.path
        near = manifest.project
        aci = self.references(manifest.aci.dependencies, near, manifest.path)
        builder = self.references(manifest.builder.dependencies, near, manifest.path)
        tester = self.references(manifest.tester.dependencies, near, manifest.path)
        self.nodes[key] = replace(self.nodes[key], aci=aci, builder=builder, tester=tester)
        if needs_test_build(manifest.project):
            tests = tests_key(folder)
            self.paths[tests] = manifest.project / "tests" / ACI_MANIFEST
            self.nodes[tests] = Node(
                tests,
                ImageName(f"{manifest.name.name}-tests", manifest.name.version),
                Source.TESTS,
                manifest.project / "tests",
                manifest,
                aci=(key,),
                builder=self.references(manifest.tester.builder.dependencies, near, manifest.path),
            )
        return key

    def references(self, names: tuple[Reference, ...], near: Path, where: Path) -> tuple[str, ...]:
        return tuple(self.reference(name, near, where) for name in names)

    def reference(self, name: Reference, near: Path, where: Path) -> str:
        """The key of the node that provides `name` for the project at `near`."""
        if isinstance(name, OciReference):
            key = str(name)
            self.nodes.setdefault(key, Node(key, name, Source.OCI, where=where))
            return key
        stored = self.store.find(name)
        if stored is not None:
            key = f"{stored.name}@{stored.image_id}"
            self.nodes.setdefault(key, Node(key, stored.name, Source.STORE, stored=stored))
            return key
        folder = self.repo.find(name, near)
        if folder is not None:
            key = self.project(folder)
            if name.version:
                node = self.nodes[key]
                self.nodes[key] = replace(node, asked=(*node.asked, (name.version, where)))
            return key
        key = str(name)
        self.nodes.setdefault(key, Node(key, name, Source.DISCOVERY, where=where))
        return key

    def pod(self, pod: PodManifest) -> tuple[str, ...]:
        roots = []
        for app in pod.apps:
            key = app_key(pod, app.name)
            self.paths[key] = pod.path
            folder = app_folder(pod, app)
            self.nodes[key] = Node(
                key,
                pod.image_name(app),
                Source.POD_APP,
                folder.resolve() if folder is not None else None,
                aci=self.references(app.dependencies, folder or pod.project, pod.path),
            )
            roots.append(key)
        return tuple(roots)

    def ordered(self) -> tuple[Node, ...]:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for key, node in self.nodes.items():
            sorter.add(key, *node.needs)
        try:
            order = tuple(sorter.static_order())
        except graphlib.CycleError as exc:
            raise self.cycle_error(list(exc.args[1])) from None
        return tuple(self.nodes[key] for key in order)

    def cycle_error(self, cycle: list[str]) -> BuildError:
        """One error naming the whole cycle, from the node the walk met first."""
        ring = cycle[:-1]  # graphlib repeats the first node at the end
        walk = list(self.nodes)
        start = min(range(len(ring)), key=lambda i: walk.index(ring[i]))
        ring = ring[start:] + ring[:start]
        # graphlib lists a cycle along "is needed by"; users read "needs".
        ring = [ring[0], *reversed(ring[1:])]
        chain = " -> ".join(short_name(self.nodes[key].name) for key in [*ring, ring[0]])
        return BuildError(
            f"dependency cycle: {chain}",
            path=self.paths[ring[0]],
            hint="images cannot depend on each other: move what they share into a third image",
        )


def make_plan(project: Path, config: Config) -> Plan:
    """The plan of the image or pod whose folder is `project`."""
    planner = _Planner(config)
    pod: PodManifest | None = None
    if (project / POD_MANIFEST).is_file() and not (project / ACI_MANIFEST).is_file():
        pod = load_pod_manifest(project)
        planner.repo.loads += 1
        roots = planner.pod(pod)
    else:
        roots = (planner.project(project),)
    return Plan(project.resolve(), planner.ordered(), roots, pod, planner.repo.loads)


# How a project node is built: given the node and the build to run, its result (the pytest
# plugin wraps it with its session records and locks; see pytest_dgr/builds.py).
BuildStep = Callable[[Node, Callable[[], BuildResult]], BuildResult]


def _just_build(node: Node, run: Callable[[], BuildResult]) -> BuildResult:
    return run()


@dataclass
class Built:
    """What carrying out a plan gave: every node's image as a dependency, and the builds."""

    images: dict[str, Dependency] = field(default_factory=dict)
    results: dict[str, BuildResult] = field(default_factory=dict)

    def dependencies(self, keys: tuple[str, ...]) -> tuple[Dependency, ...]:
        return tuple(self.images[key] for key in keys)


def carry_out(
    plan: Plan,
    options: BuildOptions,
    *,
    force: bool = False,
    upto: tuple[str, ...] | None = None,
    step: BuildStep = _just_build,
    built: Built | None = None,
) -> Built:
    """Build or fetch, in order, the nodes that `upto` (default: the plan's roots) need:
    each project is built once, with its dependencies as resolved here; a test image only
    when `upto` names it. `built`: what an earlier call for the same plan gave (its nodes
    are not visited again; it is extended). A pod's apps are left to dgr/pod.py; `force`
    rebuilds the roots only."""
    built = built if built is not None else Built()
    for node in plan.closure(upto if upto is not None else plan.roots):
        if node.key in built.images or node.key in built.results:
            continue
        if node.source is Source.STORE:
            assert node.stored is not None
            built.images[node.key] = from_store(Store(options.config.store_path), node.stored)
        elif node.source in (Source.OCI, Source.DISCOVERY):
            built.images[node.key] = fetch(node.name, options.config, node.where or plan.project)
        elif node.source is Source.TESTS:
            built.results[node.key] = step(node, _tests_build(node, built, options))
        elif node.source is Source.PROJECT:
            result = step(node, _project_build(node, built, options, force=force and node.key in plan.roots))
            for version, where in node.asked:
                if result.name.version != version:
                    asked = ImageName(result.name.name, version)
                    raise BuildError(
                        f"dependency {asked}: {node.project} builds version {result.name.version}",
                        path=where,
                    )
            built.results[node.key] = result
            built.images[node.key] = Dependency(
                result.name, result.image_id, result.workspace.layer, result.dependencies
            )
    return built


def _project_build(
    node: Node, built: Built, options: BuildOptions, *, force: bool
) -> Callable[[], BuildResult]:
    assert node.manifest is not None and node.project is not None
    return _build_step(node.project, node.manifest, node, built, options, force=force)


def _tests_build(node: Node, built: Built, options: BuildOptions) -> Callable[[], BuildResult]:
    """The build of the test image of the image `node` tests: the generated manifest, on
    top of the image, in `target/tests-target/` of the image."""
    image = built.results[node.aci[0]]
    manifest = generated_test_manifest(image)
    target = image.workspace.target / TESTS_TARGET
    return _build_step(manifest.project, manifest, node, built, options, target=target)


def _build_step(
    project: Path,
    manifest: Manifest,
    node: Node,
    built: Built,
    options: BuildOptions,
    *,
    force: bool = False,
    target: Path | None = None,
) -> Callable[[], BuildResult]:
    deps, builder_deps = built.dependencies(node.aci), built.dependencies(node.builder)
    appc = [
        n for n in (*manifest.aci.dependencies, *manifest.builder.dependencies) if isinstance(n, ImageName)
    ]

    def run() -> BuildResult:
        with newer_version_checks(appc, options.config):  # warns about newer versions, after
            return build(
                project,
                options,
                resolved=(deps, builder_deps),
                force=force,
                manifest=manifest,
                target=target,
            )

    return run


def assemble_test_image(plan: Plan, built: Built, key: str) -> TestImage:
    """What the test containers of the image `key` run, from what `built` holds (the image,
    its tester's dependencies and its test image: carry out `image_keys_for_tests(plan, key)` first)."""
    node, tests = plan[key], plan.test_node(key)
    return TestImage.of(
        built.results[key],
        built.dependencies(node.tester),
        built.results[tests.key] if tests is not None else None,
    )


def image_keys_for_tests(plan: Plan, key: str) -> tuple[str, ...]:
    """The nodes to carry out for the test containers of the image `key`."""
    tests = plan.test_node(key)
    return (key,) if tests is None else (key, tests.key)


def app_dependencies(plan: Plan, built: Built) -> dict[str, tuple[Dependency, ...]]:
    """Each app of the plan's pod: its dependencies, as `built` resolved them."""
    assert plan.pod is not None
    return {app.name: built.dependencies(plan[app_key(plan.pod, app.name)].aci) for app in plan.pod.apps}


def plan_build_pod(project: Path, options: BuildOptions, *, force: bool = False) -> PodBuild:
    """Plan the pod at `project`, then build what its apps need (each once) and the pod."""
    plan = make_plan(project, options.config)
    assert plan.pod is not None, f"{project} is not a pod folder"
    built = carry_out(plan, options)
    return build_pod(project, options, force=force, pod=plan.pod, resolved=app_dependencies(plan, built))


def plan_build_image(project: Path, options: BuildOptions, *, force: bool = False) -> BuildResult:
    """Plan the image at `project`, then build it and what it needs (each once)."""
    plan = make_plan(project, options.config)
    return carry_out(plan, options, force=force).results[plan.roots[0]]


def plan_build_test_image(project: Path, options: BuildOptions) -> TestImage:
    """Plan the image at `project`, then build what its test containers run: the image and
    what it needs, its test image (when tests/ customises one), the tester's dependencies."""
    plan = make_plan(project, options.config)
    root = plan.roots[0]
    return assemble_test_image(plan, carry_out(plan, options, upto=image_keys_for_tests(plan, root)), root)
