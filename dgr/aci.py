"""The appc side of an image: the image manifest and the `image.aci` file.

`image_manifest` converts a :class:`~dgr.manifest.Manifest` to the appc ImageManifest as the
original dgr wrote it (field order, defaults and left-out empty fields as in its
`WriteAciManifest`). `write_aci` packs a layer directory and that manifest into an uncompressed
ACI: `manifest` first (cheap for readers that stop there), an explicit `rootfs` directory
entry (actool requires it), then `rootfs/...`.

appc has no whiteouts: files the build deleted from a dependency are left out of the ACI and
stay visible from the dependency; `write_aci` logs them as a warning.
"""

from __future__ import annotations

import json
import os
import platform
import tarfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dgr.errors import BuildError, DgrError
from dgr.layer import TarWriter, Whiteouts, atomic_file
from dgr.log import log
from dgr.manifest import App, Manifest, NameValue
from dgr.names import ImageName
from dgr.tarsink import TarSink
from dgr.userns import IDENTITY, IdMap

AC_VERSION = "0.8.11"
PRESTART = "/dgr/bin/prestart"
ROOTFS = "rootfs"
MANIFEST = "manifest"
MAX_LISTED = 10  # deleted paths named in the whiteout warning

# platform.machine() -> appc arch label (appc's own whitelist for os=linux).
_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "i386",
    "i686": "i386",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def appc_arch(machine: str | None = None) -> str:
    """The appc `arch` label for `machine` (default: this host), or a BuildError."""
    machine = machine or platform.machine()
    try:
        return _ARCHES[machine.lower()]
    except KeyError:
        raise BuildError(f"appc has no arch label for machine {machine!r}") from None


def _pairs(items: Sequence[NameValue]) -> list[dict[str, str]]:
    return [{"name": item.name, "value": item.value} for item in items]


def _app(app: App) -> dict[str, Any]:
    """The `app` object, empty fields left out, as the original wrote it."""
    result: dict[str, Any] = {
        "exec": list(app.exec),
        "eventHandlers": [{"name": "pre-start", "exec": [PRESTART]}],
        "user": app.user,
        "group": app.group,
    }
    if app.supplementary_gids:
        result["supplementaryGIDs"] = list(app.supplementary_gids)
    if app.working_directory:
        result["workingDirectory"] = app.working_directory
    if app.environment:
        result["environment"] = _pairs(app.environment)
    if app.mount_points:
        result["mountPoints"] = [
            {"name": m.name, "path": m.path, **({"readOnly": True} if m.read_only else {})}
            for m in app.mount_points
        ]
    if app.ports:
        result["ports"] = [
            {
                "name": p.name,
                "protocol": p.protocol,
                "port": p.port,
                "count": p.count,
                "socketActivated": p.socket_activated,
            }
            for p in app.ports
        ]
    if app.isolators:
        result["isolators"] = [{"name": i.name, "value": i.value} for i in app.isolators]
    return result


def check_rfc3339(value: str, what: str = "build-date") -> str:
    """`value` if it is an RFC3339 timestamp with `T` and an offset, else a BuildError."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value or parsed.tzinfo is None:
        raise BuildError(f"{what} {value!r} is not an RFC3339 timestamp (e.g. 2024-05-01T12:00:00+02:00)")
    return value


def _annotations(user: Sequence[NameValue], dgr_version: str, build_date: str) -> list[dict[str, str]]:
    """The user's annotations, then dgr-version and build-date (replacing same-named ones in place)."""
    result = _pairs(user)
    for name, value in (("dgr-version", dgr_version), ("build-date", build_date)):
        for item in result:
            if item["name"] == name:
                item["value"] = value
                break
        else:
            result.append({"name": name, "value": value})
    return result


def _dependency(name: ImageName, image_id: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"imageName": name.name}
    if image_id:
        if not image_id.startswith("sha512-"):
            raise BuildError(f"dependency {name}: image ID {image_id!r} is not a sha512-... appc ID")
        result["imageID"] = image_id
    if name.version:
        result["labels"] = [{"name": "version", "value": name.version}]
    return result


def image_manifest(
    manifest: Manifest,
    *,
    version: str,
    dependencies: Sequence[tuple[ImageName, str | None]],
    dgr_version: str,
    build_date: str,
) -> dict[str, Any]:
    """The appc ImageManifest (a JSON-ready dict, in appc field order) for `manifest`.

    `version` is the resolved image version ("" for none), `dependencies` the pinned
    dependencies with their appc image IDs when known, `build_date` an RFC3339 timestamp.
    `pathWhitelist` is never written (as in the original).
    """
    labels = [{"name": "version", "value": version}] if version else []
    labels += [{"name": "os", "value": "linux"}, {"name": "arch", "value": appc_arch()}]
    result: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": AC_VERSION,
        "name": manifest.name.name,
        "labels": labels,
        "app": _app(manifest.aci.app),
        "annotations": _annotations(manifest.aci.annotations, dgr_version, check_rfc3339(build_date)),
    }
    if dependencies:
        result["dependencies"] = [_dependency(name, image_id) for name, image_id in dependencies]
    return result


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """`manifest` as the bytes dgr writes (JSON indented by 2, final newline)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_aci(
    layer_dir: Path | Sequence[Path],
    manifest_json: Mapping[str, Any] | bytes,
    dest: Path,
    ids: IdMap = IDENTITY,
    *,
    whole: bool = False,
) -> str:
    """Write the ACI `dest` from `layer_dir` (the rootfs layer) and return its image ID.

    `layer_dir` may be several directories (lowest first), merged as overlayfs stacks them
    (e.g. dgr's internals under the build's upper directory).

    The image ID is `sha512-<hex>` of the (uncompressed) tar. `manifest_json` is the manifest
    dict or its exact bytes. The file appears only when complete: it is written next to `dest`
    and renamed into place, so a failure keeps any previous `dest` and leaves no temporary.
    Overlay whiteouts in `layer_dir` are dropped (appc cannot express them) and logged, unless
    the ACI is `whole` (it holds every layer below it, so nothing deleted can show through).
    Owners are written as the sandboxes saw them (`ids`, see dgr/userns.py).
    """
    data = manifest_json if isinstance(manifest_json, bytes) else manifest_bytes(manifest_json)
    top = layer_dir if isinstance(layer_dir, Path) else layer_dir[-1]
    mtime = int(os.lstat(top).st_mtime)
    with atomic_file(dest) as out:
        sink = TarSink(out, hashes=("sha512",), label=dest.name)
        writer = TarWriter(sink, ids)
        writer.add_bytes(MANIFEST, data, mtime=mtime)
        report = writer.add_tree(layer_dir, prefix=ROOTFS, whiteouts=Whiteouts.DROP)
        writer.close()
        digests = sink.close()
    if report.deleted and not whole:
        shown = ", ".join(report.deleted[:MAX_LISTED]) + (" ..." if len(report.deleted) > MAX_LISTED else "")
        log.warning(
            "%s: %d deleted path(s) stay visible from the dependencies in the appc image "
            "(appc has no whiteouts; the OCI image hides them): %s",
            dest.name,
            len(report.deleted),
            shown,
        )
    if report.sockets:
        log.debug("%s: sockets left out: %s", dest.name, ", ".join(report.sockets))
    assert digests.sha512 is not None
    return f"sha512-{digests.sha512}"


def read_aci_manifest(path: Path) -> dict[str, Any]:
    """The image manifest of the ACI `path` (raw, gzip, bzip2 or xz), or a DgrError."""
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if member.name.strip("/").removeprefix("./") == MANIFEST and member.isreg():
                    handle = archive.extractfile(member)
                    assert handle is not None
                    loaded = json.loads(handle.read())
                    if not isinstance(loaded, dict):
                        raise DgrError("the ACI manifest is not a JSON object", path=path)
                    return loaded
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise DgrError(f"cannot read the ACI manifest: {exc}", path=path) from None
    raise DgrError("no manifest in this ACI", path=path)
