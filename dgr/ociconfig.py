"""The OCI image config of an image: what its manifest's app becomes (and what a base gives).

`image_config` turns the manifest into the config that dgr/oci.py writes beside the layers;
`inherit_app` and `app_of_config` go the other way, from an OCI base image's config to the
app of an image built on it or of a pod app.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dgr.aci import check_rfc3339
from dgr.errors import BuildError
from dgr.manifest import App, Manifest, NameValue, Port
from dgr.readiness import oci_healthcheck

START = "/dgr/bin/start"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Well-known appc annotations and their OCI label names.
_ANNOTATION_LABELS = {
    "authors": "org.opencontainers.image.authors",
    "homepage": "org.opencontainers.image.url",
    "documentation": "org.opencontainers.image.documentation",
}
# platform.machine() -> (OCI architecture, variant)
_PLATFORMS = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
}


def oci_platform(machine: str | None = None) -> dict[str, str]:
    """`{"architecture", "os"[, "variant"]}` for `machine` (default: this host)."""
    machine = machine or platform.machine()
    try:
        arch, variant = _PLATFORMS[machine.lower()]
    except KeyError:
        raise BuildError(f"no OCI architecture known for machine {machine!r}") from None
    result = {"architecture": arch, "os": "linux"}
    if variant:
        result["variant"] = variant
    return result


def inherit_app(app: App, base: Mapping[str, Any], layers: Sequence[Path]) -> App:
    """`app` with what an OCI base image's config sets and the manifest does not: each `Env`
    variable the manifest does not set (the base's first, in its order), `WorkingDir`, and
    `User` (when the manifest sets neither user nor group; a user without a group gets its
    primary group from the `/etc/passwd` of `layers`, the image's layers bottom first)."""
    settings = base.get("config") or {}
    if not isinstance(settings, dict):
        return app
    own = {item.name for item in app.environment}
    env: list[NameValue] = []
    for entry in settings.get("Env") or []:
        name, sep, value = str(entry).partition("=")
        if sep and name not in own and all(e.name != name for e in env):
            env.append(NameValue(name, value))
    changes: dict[str, Any] = {"environment": (*env, *app.environment)}
    workdir = str(settings.get("WorkingDir") or "")
    if not app.working_directory and workdir.startswith("/"):
        changes["working_directory"] = workdir
    user = str(settings.get("User") or "")
    if user and not {"user", "group"} & set(app.given):
        name, _, group = user.partition(":")
        changes["user"] = name
        changes["group"] = group or _primary_group(name, layers)
    return replace(app, **changes)


def app_of_config(base: Mapping[str, Any], layers: Sequence[Path]) -> App:
    """The app an OCI image config describes: Entrypoint + Cmd as exec, its exposed TCP and
    UDP ports (named `tcp-80`...), and what :func:`inherit_app` takes (for a pod app)."""
    settings = base.get("config") or {}
    settings = settings if isinstance(settings, dict) else {}
    command = [str(a) for a in (settings.get("Entrypoint") or []) + (settings.get("Cmd") or [])]
    ports = []
    for spec in sorted(settings.get("ExposedPorts") or {}):
        number, _, protocol = str(spec).partition("/")
        protocol = protocol or "tcp"
        if number.isdigit() and protocol in ("tcp", "udp") and 0 < int(number) < 65536:
            ports.append(Port(f"{protocol}-{number}", int(number), protocol))
    app = App(exec=tuple(command) or App().exec, ports=tuple(ports))
    return inherit_app(app, base, layers)


def _primary_group(user: str, layers: Sequence[Path]) -> str:
    """The primary gid of `user` (a name or a uid) in the topmost `/etc/passwd` of `layers`,
    else "0"."""
    for layer in reversed(layers):
        passwd = layer / "etc" / "passwd"
        if passwd.is_symlink() or passwd.exists() and not passwd.is_file():
            break  # a whiteout or something we do not follow: no passwd
        if not passwd.is_file():
            continue
        for line in passwd.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and user in (fields[0], fields[2]):
                return fields[3]
        break
    return "0"


def _user(app: App) -> str:
    for what, value in (("user", app.user), ("group", app.group)):
        if value.startswith("/"):
            raise BuildError(
                f"aci.app.{what} {value!r} (the owner of a file) cannot be expressed in an OCI image",
                key=f"aci.app.{what}",
                hint="use a name or a numeric id",
            )
    return f"{app.user}:{app.group}"


def _environment(app: App) -> list[str]:
    names = {item.name for item in app.environment}
    env = [] if "PATH" in names else [f"PATH={DEFAULT_PATH}"]
    return env + [f"{item.name}={item.value}" for item in app.environment]


def _labels(
    manifest: Manifest,
    version: str,
    created: str,
    extra: Mapping[str, str],
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    labels = {
        **(inherited or {}),
        "org.opencontainers.image.title": manifest.name.name,
        "org.opencontainers.image.created": created,
    }
    if version:
        labels["org.opencontainers.image.version"] = version
    for item in manifest.aci.annotations:
        labels[item.name] = item.value
        if item.name in _ANNOTATION_LABELS:
            labels[_ANNOTATION_LABELS[item.name]] = item.value
    labels.update(extra)
    return labels


def image_config(
    manifest: Manifest,
    *,
    version: str,
    diff_ids: Sequence[str],
    created: str,
    history: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    inherited_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OCI image config for `manifest`, with the layers `diff_ids` (dependency order).

    Entrypoint is dgr's start wrapper (prestart, then exec of its arguments) and Cmd the app's
    exec. `history` gives a `created_by` per layer (default: dependency layers, then this
    build). `labels` are added to the OCI labels derived from the manifest, which replace
    `inherited_labels` (an OCI base image's). The appc fields
    with no OCI equivalent (supplementaryGIDs, isolators, read-only mount points, socket
    activation) are left out.
    """
    app = manifest.aci.app
    check_rfc3339(created, "created")
    config: dict[str, Any] = {
        "User": _user(app),
        "Env": _environment(app),
        "Entrypoint": [START],
        "Cmd": list(app.exec),
    }
    if app.working_directory:
        config["WorkingDir"] = app.working_directory
    ports: dict[str, dict[str, Any]] = {
        f"{n}/{p.protocol}": {} for p in app.ports for n in range(p.port, p.port + p.count)
    }
    if ports:
        config["ExposedPorts"] = ports
    if app.mount_points:
        config["Volumes"] = {m.path: {} for m in app.mount_points}
    healthcheck = oci_healthcheck(manifest.readiness())  # tester.readiness
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    config["Labels"] = _labels(manifest, version, created, labels or {}, inherited_labels)
    if history is None:
        own = f"dgr build {manifest.name.with_version(version)}"
        history = ["dgr: dependency layer"] * (len(diff_ids) - 1) + [own] if diff_ids else []
    if len(history) != len(diff_ids):
        raise BuildError(f"{len(history)} history entries for {len(diff_ids)} layers")
    return {
        "created": created,
        **oci_platform(),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "created_by": line} for line in history],
    }
