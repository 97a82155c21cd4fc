"""Export a built pod as a Kubernetes `v1 Pod` manifest (`target/pod.kube.yml`).

One container per app: the image is `<registry>/<image name>:<version>` (`localhost` by
default: the name podman gives an OCI layout copied into its store with skopeo), the command
is dgr's start wrapper (prestart, then the app) and the args the app's exec, as in the OCI
image config; environment, working directory, numeric user/group, the ports `pod.ports`
exposes (with their `hostPort`), mounts of pod volumes (`host` → hostPath, `empty` → emptyDir)
and a `readinessProbe` from the image's readiness check (dgr/readiness.py). Containers
of a Kubernetes Pod share one network namespace, as dgr's pods do, so the apps still reach
each other on 127.0.0.1. `podman kube play` runs the file as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dgr.names import ImageName, oci_tag
from dgr.ociconfig import START
from dgr.podbuild import AppBuild, PodBuild, app_mounts, host_source
from dgr.readiness import kube_probe

DEFAULT_REGISTRY = "localhost"
# Kubernetes: a port name is an IANA service name, an annotation key an optional DNS prefix
# and a name of at most 63 characters.
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def image_reference(name: ImageName, registry: str = DEFAULT_REGISTRY) -> str:
    """The reference of an app image for a container engine: `<registry>/<name>:<tag>`, the
    tag being the version as an OCI tag (dgr.names.oci_tag)."""
    return f"{registry.rstrip('/')}/{name.name}:{oci_tag(name.version)}"


def _numeric(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def kube_container(built: PodBuild, app: AppBuild, registry: str) -> dict[str, Any]:

    runtime = app.runtime_app
    container: dict[str, Any] = {
        "name": app.name,
        "image": image_reference(app.result.name, registry),
        "command": [START],
        "args": list(runtime.exec),
    }
    if runtime.working_directory:
        container["workingDir"] = runtime.working_directory
    if runtime.environment:
        container["env"] = [{"name": e.name, "value": e.value} for e in runtime.environment]
    # Only the ports `pod.ports` exposes: the apps reach the others on localhost anyway, and
    # podman 4.3 publishes every listed containerPort on the host (clashes, fails with
    # --network=none).
    host_ports = {p.name: p for p in built.pod.ports}
    ports = []
    for port in runtime.ports:
        exposed = host_ports.get(port.name)
        if exposed is None or port.protocol.lower() not in ("tcp", "udp", "sctp"):
            continue
        entry: dict[str, Any] = {
            "containerPort": port.port,
            "protocol": port.protocol.upper(),
            "hostPort": exposed.host_port,
        }
        if _PORT_NAME.match(port.name):
            entry["name"] = port.name
        if exposed.host_ip:
            entry["hostIP"] = exposed.host_ip
        ports.append(entry)
    if ports:
        container["ports"] = ports
    mounts = [
        {"name": volume.name, "mountPath": path, **({"readOnly": True} if read_only else {})}
        for volume, path, read_only in app_mounts(built.pod, app)
    ]
    if mounts:
        container["volumeMounts"] = mounts
    probe = kube_probe(app.result.manifest.readiness())  # the image's tester.readiness
    if probe is not None:
        container["readinessProbe"] = probe
    security: dict[str, Any] = {}
    user, group = _numeric(runtime.user), _numeric(runtime.group)
    if user is not None:
        security["runAsUser"] = user
    if group is not None:
        security["runAsGroup"] = group
    if security:
        container["securityContext"] = security
    return container


def kube_pod(built: PodBuild, registry: str = DEFAULT_REGISTRY) -> dict[str, Any]:
    """The `v1 Pod` of a built pod, as a YAML-ready dict."""

    pod = built.pod
    metadata: dict[str, Any] = {
        "name": pod.ac_name[:63].rstrip("-"),
        "labels": {
            "app.kubernetes.io/name": pod.ac_name[:63].rstrip("-"),
            "app.kubernetes.io/version": oci_tag(built.version)[:63].strip("._-"),
        },
    }
    annotations = {a.name: a.value for a in pod.annotations if _ANNOTATION_KEY.match(a.name)}
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {"containers": [kube_container(built, app, registry) for app in built.apps]}
    volumes = []
    for volume in pod.volumes:
        if volume.kind == "host":
            volumes.append({"name": volume.name, "hostPath": {"path": str(host_source(pod, volume))}})
        else:
            volumes.append({"name": volume.name, "emptyDir": {}})
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def write_kube(built: PodBuild, registry: str = DEFAULT_REGISTRY, dest: Path | None = None) -> Path:
    """Write the pod's Kubernetes manifest (default `target/pod.kube.yml`); returns its path."""
    import os

    dest = dest or built.kube_yaml
    text = yaml.safe_dump(kube_pod(built, registry), sort_keys=False, default_flow_style=False)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dest)
    return dest
