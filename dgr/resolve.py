"""Where a dependency comes from (SPEC §9): the local store, a project folder of the same
repository whose manifest builds that name, or appc discovery; a dependency written as an
OCI reference (`docker://...`, `oci:...`, `oci-archive:...`) is an OCI image, pinned by
digest (dgr/ociref.py). The plan (dgr/plan.py) asks these in that order, once per name;
what is fetched here becomes a `Dependency` with its layer and its own dependencies.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from dgr.config import Config
from dgr.errors import BuildError, DgrError
from dgr.fetch import fetch_if_discoverable
from dgr.images import Dependency
from dgr.log import log
from dgr.manifest import ACI_MANIFEST, POD_MANIFEST, Manifest
from dgr.manifest_load import load_manifest
from dgr.names import ImageName
from dgr.oci import LayerBlob
from dgr.ociref import resolve_image
from dgr.ocistore import StoredOciImage
from dgr.process import run
from dgr.reference import OciReference, Reference
from dgr.store import Store, StoredImage

SKIP_DIRS = {"target", ".git", ".venv", "node_modules", "__pycache__"}
# In a generated project folder (a pod app without its own folder): the folder it stands for.
ORIGIN_FILE = ".dgr-origin"


def repository_root(project: Path) -> Path:
    """The enclosing git work tree of `project`, else the folder holding its project.

    Outside git, the folder is the parent of the outermost project folder that encloses
    `project` (so a test image built from `aci-x/tests/` sees `aci-x`'s siblings). A
    generated folder holding `.dgr-origin` resolves like the folder named there.
    """
    origin = project / ORIGIN_FILE
    if origin.is_file():
        project = Path(origin.read_text(encoding="utf-8").strip())
    try:
        out = run(["git", "-C", str(project), "rev-parse", "--show-toplevel"], timeout=10, check=False)
        if out.returncode == 0 and out.output.strip():
            return Path(out.output.strip())
    except DgrError:  # no git, or it hung
        pass
    folder = project.resolve()
    while (folder.parent / ACI_MANIFEST).is_file() or (folder.parent / POD_MANIFEST).is_file():
        folder = folder.parent
    return folder.parent


def project_folders(root: Path) -> Iterator[Path]:
    """Every folder under `root` holding an aci-manifest.yml (outputs and VCS dirs skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        if ACI_MANIFEST in filenames:
            yield Path(dirpath)


def find_local_project(
    name: ImageName, near: Path, *, load: Callable[[Path], Manifest] = load_manifest
) -> Path | None:
    """The project folder of the same repository that builds `name`, if any (`load`: how
    manifests are read, the plan's reads each once)."""
    for folder in project_folders(repository_root(near)):
        if folder.resolve() == near.resolve():
            continue
        try:
            candidate = load(folder).name
        except DgrError:
            continue
        if candidate.name == name.name and (
            not name.version or not candidate.version or candidate.version == name.version
        ):
            return folder
    return None


def fetch(name: Reference, config: Config, where: Path) -> Dependency:
    """`name` from the store, else fetched: an OCI reference, or by appc discovery (not
    from a project folder; `where`: the manifest that needs it, for errors)."""
    if isinstance(name, OciReference):
        return oci_dependency(name, resolve_image(name, config, where=str(where)))
    store = Store(config.store_path)
    stored = store.find(name)
    if stored is not None:
        log.debug("%s found in the store (%s)", stored.name, stored.image_id[:39])
        return from_store(store, stored)
    # (3) appc discovery: download, verify and store (dgr/fetch.py).

    fetched = fetch_if_discoverable(name, config, store)
    if fetched is not None:
        return from_store(store, fetched)
    raise BuildError(
        f"dependency {name} not found",
        path=where,
        hint="add a project folder that builds it to this repository, install it in the store, "
        "or make it discoverable (ac-discovery; see docs/store.md)",
    )


def from_store(store: Store, image: StoredImage) -> Dependency:
    """A stored image as a dependency, with its own dependencies (by pinned image ID)."""
    children = []
    for dep in image.manifest.get("dependencies") or []:
        image_id = dep.get("imageID")
        version = next((lab["value"] for lab in dep.get("labels", []) if lab.get("name") == "version"), "")
        found = store.get(image_id) if image_id else store.find(ImageName(dep["imageName"], version))
        if found is None:
            raise BuildError(
                f"{image.name} needs {dep['imageName']}:{version}, which is not in the store",
                path=store.root,
            )
        children.append(from_store(store, found))
    return Dependency(image.name, image.image_id, image.layer, tuple(children))


def oci_dependency(ref: OciReference, image: StoredOciImage) -> Dependency:
    """A stored OCI image as a dependency: one per layer, each depending on the layer below
    (as OCI chain IDs do), the top one carrying the image. Each keeps its blob as fetched,
    which the OCI output reuses byte for byte."""

    if not image.layers:
        raise BuildError(f"{ref}: the image has no layers", hint="a base image needs at least one layer")
    below: tuple[Dependency, ...] = ()
    chain = ""
    for index, layer in enumerate(image.layers):
        chain = (
            layer.diff_id
            if not chain
            else "sha256:" + hashlib.sha256(f"{chain} {layer.diff_id}".encode()).hexdigest()
        )
        top = index == len(image.layers) - 1
        blob = LayerBlob(layer.blob, layer.digest, layer.diff_id, layer.size, layer.media_type)
        below = (Dependency(ref, chain, layer.directory, below, blob=blob, oci=image if top else None),)
    return below[0]
