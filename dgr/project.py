"""A project folder, one image or a pod, behind one protocol: the faces never ask which.

`open_project(folder, options)` gives an :class:`ImageProject` (the folder holds
`aci-manifest.yml`) or a :class:`PodProject` (`pod-manifest.yml`). Both are a
:class:`Project`: built through the plan (dgr/plan.py), cleaned, their templates tried, run,
their graphs written, where `dgr test` keeps pytest's cache. What applies to one kind only
(a Kubernetes export of a pod, a file copied out of an image, one archive named by `-o`)
fails on the other with one error, whichever face asked. Install, export, sign and push act
on the images `build` gives (every app's for a pod), the same way for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dgr.build import clean as clean_target
from dgr.container import run_image
from dgr.documents import images_document, pod_document
from dgr.errors import DgrError, UsageError
from dgr.export import check_destination
from dgr.extract import copy_from_aci
from dgr.graph import write_graph
from dgr.images import BuildResult
from dgr.kube import write_kube
from dgr.manifest import ACI_MANIFEST, POD_MANIFEST, Manifest
from dgr.manifest_load import detect_project, load_manifest
from dgr.options import BuildOptions
from dgr.plan import plan_build_image, plan_build_pod
from dgr.pod import app_manifests, clean_pod, try_pod
from dgr.podbuild import PodBuild
from dgr.podrun import run_pod
from dgr.trying import try_templates
from dgr.workspace import target_dir

POD_COMMANDS = "build, clean, try, test, install, push, sign, run, graph, kube"


@dataclass(frozen=True)
class ProjectBuild:
    """A project built (or found up to date): its images, every app's for a pod."""

    results: tuple[BuildResult, ...]
    pod: PodBuild | None = None

    def document(self) -> dict[str, Any]:
        """What `dgr build --json` prints: the images' records; for a pod, the pod's record
        too and each image's app (docs/cli.md)."""
        return pod_document(self.pod) if self.pod is not None else images_document(list(self.results))

    def images_document(self, **extra: list[Any]) -> dict[str, Any]:
        """`{"images": [...]}`, each record with its entry of every `extra` list."""
        return images_document(list(self.results), **extra)


class Project(Protocol):
    """What every command does with a project, whichever kind it is."""

    folder: Path
    options: BuildOptions

    def build(self, *, force: bool = False) -> ProjectBuild:
        """Build what changed (everything the project is, with `force`), each image once."""
        ...

    def clean(self) -> list[Path]:
        """Remove the target folders; the ones removed."""
        ...

    def try_templates(self, show: Callable[[str], None]) -> Path:
        """Render the templates with their attributes, showing each file; the output folder."""
        ...

    def run(
        self,
        *,
        env: Mapping[str, str],
        override: str | None,
        volumes: Sequence[str],
        host_network: bool,
        exec_: Sequence[str] | None,
        ports: Sequence[str],
    ) -> int:
        """Build if needed, run attached to the terminal; the exit code."""
        ...

    def write_graphs(self) -> list[Path]:
        """Write each image's dependency graph into its target; the files written."""
        ...

    def write_kube(self, registry: str, dest: Path | None) -> tuple[Path, ProjectBuild]:
        """Build if needed, write the Kubernetes Pod manifest; its path and the build."""
        ...

    def copy_out(self, path: str, host_dir: Path) -> Path:
        """Build if needed, copy `path` of the image's own layer to `host_dir`; the copy."""
        ...

    def check_archive_destination(self, dest: Path) -> None:
        """Before any build: `dest` can take the one archive of `dgr export -o`."""
        ...

    def pytest_cache_dir(self) -> Path | None:
        """Where `dgr test` keeps pytest's cache (not among the project's files, which are
        build inputs); None to leave it to pytest."""
        ...


class ImageProject:
    """A folder holding aci-manifest.yml: one image."""

    def __init__(self, folder: Path, options: BuildOptions) -> None:
        self.folder = folder
        self.options = options

    def build(self, *, force: bool = False) -> ProjectBuild:
        return ProjectBuild((plan_build_image(self.folder, self.options, force=force),))

    def clean(self) -> list[Path]:
        return [clean_target(self.folder, self.options)]

    def try_templates(self, show: Callable[[str], None]) -> Path:
        return try_templates(self.folder, self.options, show=show)

    def run(
        self,
        *,
        env: Mapping[str, str],
        override: str | None,
        volumes: Sequence[str],
        host_network: bool,
        exec_: Sequence[str] | None,
        ports: Sequence[str],
    ) -> int:
        result = plan_build_image(self.folder, self.options)
        return run_image(
            result,
            env=env,
            override=override,
            volumes=volumes,
            host_network=host_network,
            exec_=exec_,
            ports=ports,
        )

    def write_graphs(self) -> list[Path]:
        manifest = load_manifest(self.folder)
        return write_graph(manifest, self._target(manifest))

    def write_kube(self, registry: str, dest: Path | None) -> tuple[Path, ProjectBuild]:
        raise DgrError("dgr kube works on a pod (a folder holding pod-manifest.yml)", path=self.folder)

    def copy_out(self, path: str, host_dir: Path) -> Path:
        result = plan_build_image(self.folder, self.options)
        return copy_from_aci(result.workspace.aci, path, host_dir)

    def check_archive_destination(self, dest: Path) -> None:
        check_destination(dest)

    def pytest_cache_dir(self) -> Path | None:
        try:
            return self._target(load_manifest(self.folder)) / "pytest-cache"
        except DgrError:
            return None  # the build item reports it

    def _target(self, manifest: Manifest) -> Path:
        return target_dir(manifest, self.options.config, self.options.targets_root)


class PodProject:
    """A folder holding pod-manifest.yml: apps built, run and tested together (dgr/pod.py)."""

    def __init__(self, folder: Path, options: BuildOptions) -> None:
        self.folder = folder
        self.options = options

    def build(self, *, force: bool = False) -> ProjectBuild:
        return self._built(plan_build_pod(self.folder, self.options, force=force))

    def clean(self) -> list[Path]:
        return clean_pod(self.folder, self.options)

    def try_templates(self, show: Callable[[str], None]) -> Path:
        return try_pod(plan_build_pod(self.folder, self.options), show=show)

    def run(
        self,
        *,
        env: Mapping[str, str],
        override: str | None,
        volumes: Sequence[str],
        host_network: bool,
        exec_: Sequence[str] | None,
        ports: Sequence[str],
    ) -> int:
        if exec_ or volumes:
            raise UsageError(
                "on a pod, dgr run takes no command and no -v (set exec and volumes in pod-manifest.yml)"
            )
        built = plan_build_pod(self.folder, self.options)
        return run_pod(built, self.options, env=env, override=override, host_network=host_network)

    def write_graphs(self) -> list[Path]:
        return [
            path
            for manifest, target in app_manifests(self.folder, self.options)
            for path in write_graph(manifest, target)
        ]

    def write_kube(self, registry: str, dest: Path | None) -> tuple[Path, ProjectBuild]:
        built = plan_build_pod(self.folder, self.options)
        return write_kube(built, registry=registry, dest=dest), self._built(built)

    def copy_out(self, path: str, host_dir: Path) -> Path:
        raise DgrError("dgr cp does not work on a pod", path=self.folder, hint=f"on a pod: {POD_COMMANDS}")

    def check_archive_destination(self, dest: Path) -> None:
        raise UsageError("on a pod, dgr export writes one archive per app in its target: no -o")

    def pytest_cache_dir(self) -> Path | None:
        return None  # pytest's default, as before the protocol

    @staticmethod
    def _built(built: PodBuild) -> ProjectBuild:
        return ProjectBuild(tuple(app.result for app in built.apps), built)


PROJECT_MANIFESTS: dict[str, type[ImageProject] | type[PodProject]] = {
    ACI_MANIFEST: ImageProject,
    POD_MANIFEST: PodProject,
}


_DETECTED: dict[str, type[ImageProject] | type[PodProject]] = {"aci": ImageProject, "pod": PodProject}


def project_kind(folder: Path) -> type[ImageProject] | type[PodProject] | None:
    """Which kind of project `folder` is, by the manifest it holds; None for any other folder."""
    for manifest, kind in PROJECT_MANIFESTS.items():
        if (folder / manifest).is_file():
            return kind
    return None


def open_project(folder: Path, options: BuildOptions) -> Project:
    """The project at `folder` (ManifestError `Cannot construct aci or pod` when it holds
    neither manifest)."""
    return _DETECTED[detect_project(folder)](folder, options)
