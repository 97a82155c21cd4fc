"""What a build produced, as JSON: `target/build.json` and the records of `--json`.

One record per image, read back from the target folder (so a fresh build and an up-to-date
one give the same record). The shapes are documented in docs/cli.md ("Machine-readable
output"); their keys are camelCase, as in appc and OCI documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgr.errors import DgrError
from dgr.names import ImageName
from dgr.oci import describe_layout
from dgr.workspace import Workspace

if TYPE_CHECKING:
    from dgr.images import BuildResult


def _annotation(manifest_json: Path, name: str) -> str | None:
    try:
        manifest = json.loads(manifest_json.read_bytes())
    except (OSError, ValueError) as exc:
        raise DgrError(f"cannot read the image manifest: {exc}", path=manifest_json) from None
    for item in manifest.get("annotations") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return str(item.get("value"))
    return None


def image_record(name: ImageName, image_id: str, ws: Workspace) -> dict[str, Any]:
    """The record of the image `name` built in `ws` (see docs/cli.md)."""
    oci = describe_layout(ws.oci)
    return {
        "name": name.name,
        "version": name.version,
        "reference": str(name),
        "imageId": image_id,
        "created": _annotation(ws.manifest_json, "build-date"),
        "oci": {
            "layout": str(ws.oci),
            "tag": oci.tag,
            "reference": oci.reference,
            "manifestDigest": oci.manifest_digest,
            "configDigest": oci.config_digest,
        },
        "target": str(ws.target),
        "outputs": {
            "aci": str(ws.aci),
            "manifest": str(ws.manifest_json),
            "version": str(ws.version_file),
            "layer": str(ws.layer),
            "log": str(ws.log),
            "metadata": str(ws.build_json),
        },
    }


def result_record(result: BuildResult) -> dict[str, Any]:
    """The record of a build result (fresh or up to date)."""
    return image_record(result.name, result.image_id, result.workspace)


def write_build_json(ws: Workspace, record: dict[str, Any]) -> Path:
    """Write `record` to `target/build.json` (atomically); its path."""
    tmp = ws.build_json.with_name(f".{ws.build_json.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, ws.build_json)
    return ws.build_json
