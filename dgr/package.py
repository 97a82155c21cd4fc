"""Packaging a build: its layer written as image.aci, the OCI layout, manifest.json, version
and build.json in the target, dated by the build epoch (dgr/epoch.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import dgr
from dgr import aci, epoch, metadata, oci, userns
from dgr.buildrun import BuildRun
from dgr.images import flatten
from dgr.log import step
from dgr.manifest import Manifest
from dgr.names import ImageName
from dgr.ocibase import oci_base, with_oci_pins


def json_manifest_name(data: dict[str, Any]) -> ImageName:
    """The `name:version` of an appc image manifest."""
    version = next((lab["value"] for lab in data.get("labels", []) if lab.get("name") == "version"), "")
    return ImageName(str(data["name"]), str(version))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def package(b: BuildRun, manifest: Manifest, when: int) -> str:
    """Write image.aci, manifest.json, version, oci/ and layer/ from this build's layer, dated
    `when` (the build epoch: no file of the layer is newer, see dgr/epoch.py)."""
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
    write_atomic(b.ws.manifest_json, aci.manifest_bytes(image_manifest).decode("utf-8"))
    write_atomic(b.ws.version_file, str(name))
    write_atomic(b.ws.target / "image.id", image_id + "\n")
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
