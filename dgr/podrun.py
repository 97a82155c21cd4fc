"""Running a built pod (`dgr run`): a small *holder* container (busybox only) owns the pod's
network namespace and every app's container joins it (`nsenter --net` in front of its
sandbox, see dgr/sandbox.py), so the apps reach each other on 127.0.0.1. Every container is
bubblewrap with `--die-with-parent`, with dgr as its parent: when dgr stops, even on
SIGKILL, every process goes, and the namespace with its last process."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO

from dgr import userns
from dgr.build import internals_layer
from dgr.container import Container, ContainerSpec, Volume, image_spec
from dgr.errors import ContainerError
from dgr.internals_binaries import BUSYBOX
from dgr.leftovers import make_dir
from dgr.log import log
from dgr.options import BuildOptions
from dgr.podbuild import AppBuild, PodBuild, app_mounts, host_source
from dgr.podmanifest import PodManifest

# The holder of the pod's network namespace: busybox only, sleeping until stopped.
HOLD = "while :; do /dgr/bin/busybox sleep 3600; done"


def holder_spec(pod: PodManifest, options: BuildOptions) -> ContainerSpec:
    """The container that owns the pod's network namespace: busybox, asleep."""

    return ContainerSpec(
        name=pod.ac_name,
        layers=(internals_layer(options.config.cache_path),),
        exec=(BUSYBOX, "sh", "-c", HOLD),
        prestart=False,
    )


def netns_of(container: Container) -> str:
    """The network namespace of a started container, as a path another sandbox can join."""
    return f"/proc/{container.init_pid()}/ns/net"


def runtime_volumes(pod: PodManifest, app: AppBuild, state: Path) -> tuple[Volume, ...]:
    """The host folders of the app's mounts; `empty` volumes are folders of this run."""

    volumes = []
    for volume, path, read_only in app_mounts(pod, app):
        if volume.kind == "host":
            source = host_source(pod, volume)
            if not source.exists():
                raise ContainerError(f"volume {volume.name}: {source} does not exist", path=pod.path)
        else:
            source = state / "volumes" / volume.name
            if not source.exists():
                source.mkdir(parents=True)
                os.chmod(source, int(volume.mode, 8))
                ids = userns.current()
                os.chown(source, ids.host_uid(volume.uid), ids.host_gid(volume.gid))
        volumes.append(Volume(source, path, read_only))
    return tuple(volumes)


class RunningPod:
    """The started containers of a pod (`dgr run`): the holder, then every app."""

    def __init__(self, holder: Container | None, apps: dict[str, Container], state: Path) -> None:
        self.holder = holder
        self.apps = apps
        self.state = state

    def __getitem__(self, name: str) -> Container:
        return self.apps[name]

    def running(self) -> list[str]:
        return [name for name, c in self.apps.items() if c.running()]

    def follow(self, out: IO[str] | None = None, poll: float = 0.1) -> int:
        """Print every app's output, each line prefixed with the app's name, until all apps
        have exited; returns the first non-zero exit code (in app order), else 0."""
        out = out or sys.stdout
        offsets = dict.fromkeys(self.apps, 0)
        width = max(len(name) for name in self.apps)
        while True:
            alive = self.running()
            for name, container in self.apps.items():
                offsets[name] = _print_new(container.log_path, offsets[name], f"{name:<{width}} | ", out)
            if not alive:
                break
            time.sleep(poll)
        codes = [c.wait() for c in self.apps.values()]
        return next((code for code in codes if code != 0), 0)

    def stop(self) -> None:
        """Stop every app, then the holder (the namespace goes with its last process)."""
        for container in self.apps.values():
            container.stop()
        if self.holder is not None:
            self.holder.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> RunningPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _print_new(path: Path, offset: int, prefix: str, out: IO[str]) -> int:
    """Print the complete lines `path` got since `offset`; the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        out.write(f"{prefix}{line}\n")
    out.flush()
    return offset + end


def start_pod(
    built: PodBuild,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    override: str | None = None,
    host_network: bool = False,
) -> RunningPod:
    """Start every app of `built` (prestart included) in one network namespace."""

    pod = built.pod
    state = make_dir(None, "dgr-pod-", suffix=f"-{pod.ac_name}")
    environment = dict(env or {})
    if override is not None:
        environment["TEMPLATER_OVERRIDE"] = override
    holder: Container | None = None
    apps: dict[str, Container] = {}
    running = RunningPod(holder, apps, state)
    try:
        netns = None
        if not host_network:
            holder = running.holder = Container(holder_spec(pod, options), state_dir=state / "holder")
            holder.start()
            netns = netns_of(holder)
        for app in built.apps:
            spec = image_spec(
                app.result,
                env=environment,
                volumes=runtime_volumes(pod, app, state),
                host_network=host_network,
            )
            container = Container(replace(spec, name=app.name, netns=netns), state_dir=state / app.name)
            apps[app.name] = container.start()
            log.info("Started app %s of pod %s", app.name, pod.name)
    except BaseException:
        running.stop()
        raise
    return running


def run_pod(
    built: PodBuild,
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    override: str | None = None,
    host_network: bool = False,
) -> int:
    """`dgr run` on a pod: start it, show the apps' output until they all exit, stop it."""
    with start_pod(built, options, env=env, override=override, host_network=host_network) as running:
        return running.follow()
