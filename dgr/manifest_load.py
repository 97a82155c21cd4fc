"""A project's manifest found, read, rendered and validated: the entry to dgr/manifest.py's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgr.errors import ManifestError
from dgr.manifest import ACI_MANIFEST, POD_MANIFEST, Manifest
from dgr.manifest_reader import parse_manifest
from dgr.manifest_template import is_templated, render_before_build, render_manifest


def read_manifest_text(project: Path) -> tuple[Path, str]:
    """The path and text of the project's aci-manifest.yml (ManifestError if unreadable)."""
    path = project / ACI_MANIFEST
    try:
        return path, path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"Cannot construct aci or pod: {exc.strerror}", path=project) from None


def load_manifest(project: Path, attributes: dict[str, Any] | None = None) -> Manifest:
    """Load `project`'s manifest, rendered with `attributes`.

    With `attributes=None` (before the build) the attributes that build scripts write are
    unknown: a version that depends on one is dropped (see render_before_build); with
    attributes, a missing one is an error.
    """
    path, text = read_manifest_text(project)
    if not is_templated(text):
        return parse_manifest(text, path)
    if attributes is not None:
        return parse_manifest(render_manifest(text, path, attributes), path)
    rendered = render_before_build(text, path)
    if rendered.name_unknown:
        raise ManifestError(
            "the image name depends on an attribute that build scripts write: only its version may",
            path=path,
            key="name",
            hint="write the name itself in the manifest, e.g. name: example.com/app:{{ version }}",
        )
    return parse_manifest(rendered.text, path, version_unknown=rendered.version_unknown)


def detect_project(work_path: Path) -> str:
    """'aci' or 'pod' for the folder `work_path`, or ManifestError `Cannot construct aci or pod`."""
    if (work_path / ACI_MANIFEST).is_file():
        return "aci"
    if (work_path / POD_MANIFEST).is_file():
        return "pod"
    raise ManifestError(
        f"Cannot construct aci or pod: no {ACI_MANIFEST} or {POD_MANIFEST} in {work_path}",
        path=work_path,
        hint="point -W at a project folder, or create one with `dgr init`",
    )
