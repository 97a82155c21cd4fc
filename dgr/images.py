"""Images as a build sees them: a resolved dependency (its layer and its own dependencies)
and what a build produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dgr.manifest import Manifest
from dgr.names import ImageName
from dgr.reference import Reference
from dgr.workspace import Workspace

if TYPE_CHECKING:
    from dgr.oci import LayerBlob
    from dgr.ocistore import StoredOciImage


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
