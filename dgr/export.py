"""Hand a built image to podman or docker: `dgr export` and `dgr install --to` (docs/cli.md).

The image's OCI layout (`target/oci`) is copied by skopeo into an archive:

- `docker-archive` (the default): what `docker save` writes; `podman load` and `docker load`
  both accept it;
- `oci-archive`: an OCI image layout in a tar; `podman load` accepts it (and `docker load`
  from Docker 25 on).

Either way the image is named `NAME:TAG` as the engines name images: the appc name, with
`localhost/` in front when it has no registry host (as podman names local images), and the
layout's tag. The archive is written next to its destination and renamed into place, so a
failure leaves no half-written file. `dgr install --to podman|docker` writes a docker-archive
into the target folder, has the engine `load` it, and removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dgr.errors import DgrError
from dgr.leftovers import make_dir
from dgr.log import log, step
from dgr.names import ImageName
from dgr.oci import REPOSITORY_COMPONENT, SKOPEO_POLICY, TAG, describe_layout
from dgr.process import require_tool, run

if TYPE_CHECKING:
    from dgr.images import BuildResult

FORMATS = {"docker-archive": "image.docker.tar", "oci-archive": "image.oci.tar"}
ENGINES = ("podman", "docker")
TIMEOUT = 3600.0


class ExportError(DgrError):
    """An image could not be exported or loaded into an engine."""


@dataclass(frozen=True)
class Exported:
    """An archive written for one image."""

    path: Path
    format: str
    reference: str  # NAME:TAG inside the archive


def engine_reference(name: ImageName, tag: str) -> str:
    """`NAME:TAG` as podman and docker name the image (ExportError when they cannot)."""
    path = name.name
    host = path.split("/", 1)[0]
    if "/" not in path or not ("." in host or ":" in host or host == "localhost"):
        path = f"localhost/{path}"
    bad = [c for c in path.split("/")[1:] if not REPOSITORY_COMPONENT.match(c)]
    if bad:
        raise ExportError(
            f"{name.name} cannot be an image name for podman or docker: {bad[0]!r} is not a valid "
            "repository path component",
            hint="they take lower case letters and digits separated by '.', '_', '__' or '-'",
        )
    if not TAG.match(tag):
        raise ExportError(
            f"{tag!r} (the version of {name.name}) is not a valid image tag for podman or docker"
        )
    return f"{path}:{tag}"


def check_destination(dest: Path) -> Path:
    """`dest` as an absolute path, if an archive can be written there (else an ExportError)."""
    dest = dest.absolute()
    if dest.is_dir():
        raise ExportError(
            f"cannot write the archive {dest}: it is a folder", hint="give a file name with -o"
        )
    if not dest.parent.is_dir():
        raise ExportError(f"cannot write the archive {dest}: {dest.parent} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=dest.parent):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write the archive {dest}: {exc.strerror} (in {dest.parent})") from None
    return dest


def export_archive(result: BuildResult, dest: Path | None = None, fmt: str = "docker-archive") -> Exported:
    """Write the image of `result` as a `fmt` archive at `dest` (default: in its target)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown archive format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    ws = result.workspace
    image = describe_layout(ws.oci)
    reference = engine_reference(result.name, image.tag or "latest")
    dest = check_destination(dest or ws.target / FORMATS[fmt])
    skopeo = require_tool("skopeo")
    try:
        work = make_dir(dest.parent, f".{dest.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(f"cannot write the archive {dest}: {exc.strerror} (in {dest.parent})") from None
    try:
        policy = work / "policy.json"
        policy.write_text(json.dumps(SKOPEO_POLICY), encoding="utf-8")
        archive = work / dest.name
        with step(f"Exporting {result.name} to {dest} ({fmt}, {reference})"):
            run(
                [
                    skopeo,
                    "--policy",
                    policy,
                    "copy",
                    "--quiet",
                    image.reference,
                    f"{fmt}:{archive}:{reference}",
                ],
                timeout=TIMEOUT,
                error=ExportError,
                what=f"skopeo copy to {fmt}",
            )
            os.chmod(archive, 0o644)
            os.replace(archive, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Exported(dest, fmt, reference)


def load_into(engine: str, result: BuildResult) -> str:
    """Load the image of `result` into podman's or docker's images; its NAME:TAG there."""
    if engine not in ENGINES:
        raise ExportError(f"unknown engine {engine!r}", hint=f"one of {', '.join(ENGINES)}")
    tool = require_tool(engine, "podman" if engine == "podman" else "docker.io")
    work = make_dir(result.workspace.target, ".load-")
    try:
        exported = export_archive(result, work / FORMATS["docker-archive"])
        with step(f"Loading {exported.reference} into {engine}"):
            run(
                [tool, "load", "--input", exported.path],
                timeout=TIMEOUT,
                error=ExportError,
                what=f"{engine} load",
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("Installed %s into %s as %s", result.name, engine, exported.reference)
    return exported.reference
