"""OCI images among an image's dependencies: the base whose config the image inherits, and
the pins (references with digests) an image that flattens them records."""

from __future__ import annotations

import json
from dataclasses import replace

from dgr.images import Dependency, flatten
from dgr.manifest import Manifest, NameValue
from dgr.ociconfig import inherit_app
from dgr.ocistore import StoredOciImage
from dgr.reference import OciReference

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
