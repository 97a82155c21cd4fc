"""The JSON documents of the CLI's `--json` (shapes in docs/cli.md, "Machine-readable output").

Each command prints one: built images as their build records (dgr/metadata.py), a built pod
with its apps, the images of the local store.
"""

from __future__ import annotations

from typing import Any

from dgr.images import BuildResult
from dgr.metadata import result_record
from dgr.ociconfig import oci_platform
from dgr.ocistore import StoredOciImage
from dgr.podbuild import PodBuild
from dgr.store import StoredImage


def images_document(results: list[BuildResult], **extra: list[Any]) -> dict[str, Any]:
    """`{"images": [record, ...]}`: one build record per image (dgr/metadata.py), each
    updated with the matching entry of every `extra` list under its key."""
    records = [result_record(result) for result in results]
    for key, values in extra.items():
        for record, value in zip(records, values, strict=True):
            record[key] = value
    return {"images": records}


def pod_document(built: PodBuild) -> dict[str, Any]:
    """`{"pod": {...}, "images": [...]}` for a built pod; each image record carries its app's name."""
    pod = built.pod
    document = images_document([app.result for app in built.apps], app=[app.name for app in built.apps])
    return {
        "pod": {
            "name": pod.name.name,
            "version": built.version,
            "reference": str(pod.name.with_version(built.version)),
            "target": str(built.target),
            "manifest": str(built.manifest_json),
            "kube": str(built.kube_yaml),
        },
        **document,
    }


def stored_oci_document(image: StoredOciImage) -> dict[str, Any]:
    """An OCI image of the store as JSON (size: its compressed layers)."""
    platform = oci_platform()
    return {
        "digest": image.digest,
        "reference": image.reference,
        "os": platform["os"],
        "arch": platform["architecture"],
        "size": sum(layer.size for layer in image.layers),
        "layers": [layer.digest for layer in image.layers],
    }


def stored_document(image: StoredImage) -> dict[str, Any]:
    """A store entry as JSON."""
    return {
        "imageId": image.image_id,
        "name": image.name.name,
        "version": image.name.version,
        "reference": str(image.name),
        "os": image.os,
        "arch": image.arch,
        "size": image.aci.stat().st_size if image.aci.exists() else 0,
        "aci": str(image.aci),
    }
