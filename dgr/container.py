"""Running a built image: a container with its own mount, PID, IPC, UTS and network namespaces.

The container's root is an overlay of the image's layers (dependencies, dgr internals, the
image's own layer) under a throwaway upper folder; it runs through the same sandbox as
builds (bubblewrap). It starts with `/dgr/bin/start`, which runs prestart (prestart-early,
templater, prestart-late) and then execs the app. `exec()` enters the running container's
namespaces with nsenter.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dgr import userns
from dgr.errors import ContainerError
from dgr.internals_binaries import BUSYBOX
from dgr.leftovers import make_dir
from dgr.log import log
from dgr.ports import PortMapping, forward, parse_ports, stop
from dgr.process import Result, require_tool, run, spawn
from dgr.sandbox import DEFAULT_PATH, Bind, Overlay, Sandbox, make_scaffold

if TYPE_CHECKING:
    from dgr.images import BuildResult

START = "/dgr/bin/start"
CONTAINER_PREFIX = "dgr-container-"


@dataclass(frozen=True)
class Volume:
    """A host folder mounted at `path` in the container."""

    source: Path
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start a container of an image."""

    name: str
    layers: tuple[Path, ...]  # bottom first
    exec: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = "/"
    volumes: tuple[Volume, ...] = ()
    prestart: bool = True
    host_network: bool = False
    netns: str | None = None  # join this network namespace (the apps of a pod share one)


class Container:
    """A started container. Use as a context manager, or call stop()."""

    def __init__(self, spec: ContainerSpec, state_dir: Path | None = None, keep: bool = False) -> None:
        self.spec = spec
        self.keep = keep
        # In the system's temporary folder: what a killed `dgr run` left there goes at the next.
        self.state = state_dir or make_dir(None, CONTAINER_PREFIX, suffix=f"-{spec.name}")
        self.log_path = self.state / "container.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None

    # --- life cycle --------------------------------------------------------------------

    def sandbox(self) -> Sandbox:
        spec = self.spec
        scaffold = make_scaffold(self.state / "scaffold", dirs=[v.path for v in spec.volumes])
        overlay = Overlay(
            mountpoint=self.state / "rootfs",
            lowers=(*reversed(spec.layers), scaffold),
            upper=self.state / "upper",
            work=self.state / "work",
        )
        return Sandbox(
            root=overlay.mountpoint,
            overlays=(overlay,),
            binds=tuple(Bind(v.source, v.path, v.read_only) for v in spec.volumes),
            env=self.environment(),
            host_network=spec.host_network,
            netns=spec.netns,
            hostname=spec.name,
            tmpfs=(),
            cwd=spec.working_directory or "/",
        )

    def environment(self) -> dict[str, str]:
        return {"PATH": DEFAULT_PATH, **self.spec.env}

    def argv(self) -> list[str]:
        return [START, *self.spec.exec] if self.spec.prestart else list(self.spec.exec)

    def start(self) -> Container:
        """Start the container in the background (prestart included)."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = self.sandbox().spawn(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        log.debug("container %s started (pid %d)", self.spec.name, self.proc.pid)
        return self

    def run(self, timeout: float | None = None) -> Result:
        """Start the container, wait for it to exit; returns its exit code and output."""
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            return self.sandbox().run(self.argv(), check=False, timeout=timeout, error=ContainerError)
        finally:
            self.remove()

    def run_attached(self, ports: Sequence[PortMapping] = ()) -> int:
        """Run the container with our stdin/stdout/stderr (for `dgr run`), its `ports`
        published on the host; returns its exit code."""
        self.state.mkdir(parents=True, exist_ok=True)
        sandbox = self.sandbox()
        sandbox.prepare()
        listeners: list[subprocess.Popen[bytes]] = []
        try:
            with spawn(sandbox.command(self.argv()), session=False) as proc:  # the terminal's
                self.proc = proc
                try:
                    if ports:
                        pid = self.init_pid()
                        listeners = [forward(mapping, pid) for mapping in ports]
                    return proc.wait()
                except BaseException:
                    # The container's init first: were bwrap killed while starting it, the
                    # init could miss its parent-death signal and outlive us.
                    for pid in child_pids(proc.pid):
                        _kill(pid)
                    proc.kill()
                    raise
        finally:
            stop(listeners)
            self.remove()

    def init_pid(self, timeout: float = 10.0) -> int:
        """Host PID of the container's init (the process whose namespaces `exec` enters)."""
        if self._init_pid is not None:
            return self._init_pid
        proc = self._require_started()
        deadline = time.monotonic() + timeout
        bwrap = os.path.realpath(require_tool("bwrap", "bubblewrap"))
        while time.monotonic() < deadline:
            # Until the mounts are made, the process is a shell whose children are `mount`s.
            children = child_pids(proc.pid) if _exe(proc.pid) == bwrap else []
            if children and _exe(children[0]) == bwrap:
                self._init_pid = children[0]
                return self._init_pid
            if proc.poll() is not None:
                raise ContainerError(
                    f"container {self.spec.name} exited with code {proc.returncode}",
                    details=self.logs()[-4000:],
                )
            time.sleep(0.005)
        raise ContainerError(f"container {self.spec.name} did not start within {timeout:.0f}s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        proc = self._require_started()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"container {self.spec.name} still running after {timeout}s") from None

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the container (SIGTERM, then SIGKILL after `grace` seconds) and remove it."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                _signal_group(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            code = self.proc.returncode
        self.remove()
        return code

    def remove(self) -> None:
        if not self.keep:
            shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> Container:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()

    # --- inspection --------------------------------------------------------------------

    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60,
        check: bool = False,
    ) -> Result:
        """Run `argv` inside the running container; returns exit code and output."""
        pid = self.init_pid()
        nsenter = require_tool("nsenter", "util-linux")
        environment = {**self.environment(), **(env or {})}
        # A container with a user namespace of its own (root mode) is entered as its root.
        user = ["-U"] if userns.other_namespace(f"/proc/{pid}/ns/user") else []
        command = [
            nsenter,
            "-t",
            str(pid),
            *user,
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "-r",
            f"--wdns={self.spec.working_directory or '/'}",
            "--",
            BUSYBOX,
            "env",
            "-i",
            *(f"{k}={v}" for k, v in sorted(environment.items())),
            *argv,
        ]
        return run(
            command,
            check=check,
            timeout=timeout,
            error=ContainerError,
            what=f"{shlex.join(argv)} in container {self.spec.name}",
        )

    def read_file(self, path: str) -> str:
        result = self.exec([BUSYBOX, "cat", path])
        if result.returncode != 0:
            raise ContainerError(f"cannot read {path} in container {self.spec.name}", details=result.output)
        return result.output

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ip_addresses(self) -> list[str]:
        """The container's IPv4 addresses (only loopback unless it shares the host network)."""
        out = self.exec([BUSYBOX, "ip", "-4", "-o", "addr"]).output
        return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in f" {line} "]

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise ContainerError(f"container {self.spec.name} is not started")
        return self.proc


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def child_pids(pid: int) -> list[int]:
    """The PIDs of `pid`'s children (empty when it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def image_spec(
    result: BuildResult,
    *,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[Volume] = (),
    exec_: Sequence[str] | None = None,
    host_network: bool = False,
) -> ContainerSpec:
    """The container of a built image: its app's exec, environment and working directory."""
    app = result.manifest.aci.app
    environment = {e.name: e.value for e in app.environment}
    environment.update(env or {})
    return ContainerSpec(
        name=result.name.app_name,
        layers=result.layers,
        exec=tuple(exec_) if exec_ else app.exec,
        env=environment,
        working_directory=app.working_directory or "/",
        volumes=tuple(volumes),
        host_network=host_network,
    )


def parse_volumes(specs: Sequence[str], result: BuildResult) -> list[Volume]:
    """`MOUNT=HOSTDIR` where MOUNT is a mount point's name or an absolute path in the image."""
    by_name = {m.name: m for m in result.manifest.aci.app.mount_points}
    volumes = []
    for spec in specs:
        mount, sep, host = spec.partition("=")
        if not sep or not host:
            raise ContainerError(f"volume {spec!r}: use MOUNT=HOSTDIR")
        point = by_name.get(mount)
        if point is None and not mount.startswith("/"):
            known = ", ".join(sorted(by_name)) or "none"
            raise ContainerError(f"volume {spec!r}: no mount point named {mount!r} (known: {known})")
        source = Path(host).absolute()
        if not source.exists():
            raise ContainerError(f"volume {spec!r}: {source} does not exist")
        path = point.path if point is not None else mount
        volumes.append(Volume(source, path, point.read_only if point is not None else False))
    return volumes


def run_image(
    result: BuildResult,
    *,
    env: Mapping[str, str] | None = None,
    override: str | None = None,
    volumes: Sequence[str] = (),
    host_network: bool = False,
    exec_: Sequence[str] | None = None,
    ports: Sequence[str] = (),
) -> int:
    """Run a built image attached to our terminal; returns the container's exit code."""
    environment = dict(env or {})
    if override is not None:
        environment["TEMPLATER_OVERRIDE"] = override
    spec = image_spec(
        result,
        env=environment,
        volumes=parse_volumes(volumes, result),
        exec_=exec_,
        host_network=host_network,
    )
    mappings = parse_ports(ports, result.manifest.aci.app.ports)
    if mappings and host_network:
        raise ContainerError("-p publishes ports of a container's own network: not with --net host")
    return Container(spec).run_attached(mappings)
