"""The local image store: images content-addressed by their appc image ID.

Layout under the store root (config `storePath`, default `~/.local/share/dgr/store`):
```
images/sha512-<hex>/image.aci        the image (uncompressed tar)
                   /image.aci.asc    its signature, when there is one
                   /manifest.json    its appc image manifest (the index reads these)
                   /layer/           its own layer, unpacked (used as an overlay lower)
```
An image folder appears by one rename once complete, so readers never see half an image and
concurrent installs of the same image are harmless (the second one finds it there).

OCI images that dependencies name by a containers-transports(5) reference live beside them,
under `oci/` (:class:`~dgr.ocistore.OciStore`, fetched by dgr/ociref.py).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from dgr import userns
from dgr.aci import read_aci_manifest
from dgr.errors import DgrError, host_errors
from dgr.extract import extract_aci_rootfs
from dgr.leftovers import make_dir
from dgr.limits import DEFAULT as DEFAULT_LIMITS
from dgr.limits import Limits
from dgr.names import ImageName, compare_versions
from dgr.process import run


def appc_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "aarch64", "i686": "i386", "armv7l": "armv7l"}.get(
        machine, machine
    )


def labels(manifest: dict[str, Any]) -> dict[str, str]:
    return {str(lab.get("name")): str(lab.get("value")) for lab in manifest.get("labels", [])}


def image_id_of(path: Path) -> str:
    """`sha512-<hex>` of the (uncompressed) tar at `path`."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        magic = f.read(6)
        f.seek(0)
        if magic[:2] == b"\x1f\x8b":
            import gzip

            with gzip.open(f) as g:
                for chunk in iter(lambda: g.read(1 << 20), b""):
                    h.update(chunk)
        else:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha512-" + h.hexdigest()


@dataclass(frozen=True)
class StoredImage:
    """An image in the store."""

    image_id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> ImageName:
        return ImageName(str(self.manifest["name"]), labels(self.manifest).get("version", ""))

    @property
    def os(self) -> str:
        return labels(self.manifest).get("os", "")

    @property
    def arch(self) -> str:
        return labels(self.manifest).get("arch", "")

    @property
    def aci(self) -> Path:
        return self.path / "image.aci"

    @property
    def layer(self) -> Path:
        return self.path / "layer"

    @property
    def signature(self) -> Path | None:
        sig = self.path / "image.aci.asc"
        return sig if sig.exists() else None


class Store:
    """The local store at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"

    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"))

    def add(
        self,
        aci: Path,
        *,
        layer: Path | None = None,
        signature: Path | None = None,
        image_id: str | None = None,
        trusted: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ) -> StoredImage:
        """Put `aci` (with its unpacked `layer` when known) into the store; idempotent.

        The layer is stored owned by the host ids of dgr's sandboxes (dgr/userns.py); from an
        image that is not `trusted`, setuid/setgid bits and file capabilities are dropped; one
        that expands beyond `limits` is refused (dgr/limits.py). What an add killed midway
        left is removed by the next one (dgr/leftovers.py).
        """
        image_id = image_id or image_id_of(aci)
        dest = self.images / image_id
        if dest.is_dir():
            if signature is not None and not (dest / "image.aci.asc").exists():
                shutil.copyfile(signature, dest / "image.aci.asc")
            return self.get(image_id)
        with host_errors("adding an image to the store", folder=self.images):
            return self._add(aci, dest, layer, signature, image_id, trusted, limits)

    def _add(
        self,
        aci: Path,
        dest: Path,
        layer: Path | None,
        signature: Path | None,
        image_id: str,
        trusted: bool,
        limits: Limits,
    ) -> StoredImage:

        self.images.mkdir(parents=True, exist_ok=True)
        tmp = make_dir(self.images, ".add-")
        try:
            manifest = read_aci_manifest(aci)
            shutil.copyfile(aci, tmp / "image.aci")
            if signature is not None:
                shutil.copyfile(signature, tmp / "image.aci.asc")
            if layer is not None:
                # cp -a keeps what a layer holds beyond plain files: overlay whiteouts (0/0
                # devices) and opaque xattrs, devices, hard links, owners.
                run(["cp", "-a", "--", str(layer), str(tmp / "layer")], what="copying the layer")
            else:
                extract_aci_rootfs(aci, tmp / "layer", ids=userns.current(), trusted=trusted, limits=limits)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            with self._lock():
                if dest.exists():
                    shutil.rmtree(tmp)
                else:
                    os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(image_id)

    def get(self, image_id: str) -> StoredImage:
        path = self.images / image_id
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            raise DgrError(f"image {image_id} is not in the store", path=self.root) from None
        return StoredImage(image_id, path, manifest)

    def list(self) -> list[StoredImage]:
        if not self.images.is_dir():
            return []
        found = []
        for entry in sorted(self.images.iterdir()):
            if entry.name.startswith("sha512-") and (entry / "manifest.json").exists():
                found.append(self.get(entry.name))
        return found

    def find(self, name: ImageName, *, os_: str = "linux", arch: str | None = None) -> StoredImage | None:
        """The stored image `name` (exact version, or the newest one when no version is given)."""
        arch = arch or appc_arch()
        candidates = [
            image
            for image in self.list()
            if image.name.name == name.name and image.os in ("", os_) and image.arch in ("", arch)
        ]
        if name.version:
            candidates = [i for i in candidates if i.name.version == name.version]
        if not candidates:
            return None
        return max(candidates, key=_VersionKey)

    def versions(self, name: str) -> builtins.list[str]:
        return [i.name.version for i in self.list() if i.name.name == name]

    def remove(self, reference: str) -> builtins.list[StoredImage]:
        """Remove images by ID (`sha512-...`, a prefix is enough) or by `name[:version]`."""
        if reference.startswith("sha512-"):
            matches = [i for i in self.list() if i.image_id.startswith(reference)]
            if len(matches) > 1:  # an ID prefix names one image; never remove several by accident
                raise DgrError(
                    f"{reference!r} matches {len(matches)} images",
                    path=self.root,
                    hint="give more characters of the ID (dgr store list)",
                )
        else:
            ref = ImageName.parse(reference)
            matches = [
                i
                for i in self.list()
                if i.name.name == ref.name and (not ref.version or i.name.version == ref.version)
            ]
        if not matches:
            raise DgrError(f"no image {reference!r} in the store", path=self.root)
        with self._lock():
            for image in matches:
                shutil.rmtree(image.path)
        return matches


class _VersionKey:
    """Sort key ordering stored images by version (the original's version order)."""

    def __init__(self, image: StoredImage) -> None:
        self.version = image.name.version

    def __lt__(self, other: _VersionKey) -> bool:
        return compare_versions(self.version, other.version) < 0
