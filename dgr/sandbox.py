"""Isolated execution: every command dgr runs inside a root filesystem goes through here.

A sandbox is bubblewrap (`bwrap`) started inside a private mount namespace made by
`unshare --mount`, where the overlayfs mounts it needs are made first. Consequences:
- the overlay mounts never appear in the host's mount table and vanish with the namespace,
  whatever happens to dgr (exit, exception, Ctrl-C, SIGKILL);
- bwrap runs with `--die-with-parent` in its own PID namespace, so when dgr dies every
  process of the sandbox is killed by the kernel: nothing is left behind;
- no cgroup is created.
Mount targets must already exist in the root (bwrap would otherwise create them inside the
image): callers put them in a scaffold layer (see :func:`make_scaffold`).
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dgr.errors import DgrError, ToolError
from dgr.process import Result, require_tool, run

# Runs in the private mount namespace: mount each overlay, then become bwrap.
_MOUNT_AND_EXEC = r"""
set -e
count=$1; shift
while [ "$count" -gt 0 ]; do
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
  shift 4
  count=$((count - 1))
done
exec "$@"
"""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/dgr/bin"


@dataclass(frozen=True)
class Overlay:
    """An overlayfs mount: `lowers` (top first) under a writable `upper`, at `mountpoint`."""

    mountpoint: Path
    lowers: tuple[Path, ...]
    upper: Path
    work: Path

    def options(self) -> tuple[str, str, str, str]:
        paths = (*self.lowers, self.upper, self.work, self.mountpoint)
        for path in paths:
            if any(c in str(path) for c in ",:\n"):
                raise DgrError(
                    f"path {path} cannot be used with overlayfs (it contains ',' or ':')",
                    hint="move the project or set targetWorkDir / -p to a plain path",
                )
        return (":".join(str(p) for p in self.lowers), str(self.upper), str(self.work), str(self.mountpoint))

    def prepare(self) -> None:
        """Create the upper, work and mount point directories."""
        for path in (self.upper, self.work, self.mountpoint):
            path.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Bind:
    """Host path `source` visible at `target` inside the sandbox."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Sandbox:
    """Where and how a command runs: the root, its mounts, its environment, its network."""

    root: Path
    overlays: tuple[Overlay, ...] = ()
    binds: tuple[Bind, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    host_network: bool = False
    hostname: str = "dgr"
    tmpfs: tuple[str, ...] = ("/tmp",)
    cwd: str = "/"
    netns: str | None = None  # join this network namespace (e.g. /proc/PID/ns/net) instead

    def command(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` in this sandbox."""
        bwrap = require_tool("bwrap", "bubblewrap")
        unshare = require_tool("unshare", "util-linux")
        args = [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _MOUNT_AND_EXEC, "sh"]
        if self.netns is not None:
            # nsenter execs (no fork), so bwrap stays our child and --die-with-parent holds.
            args = [require_tool("nsenter", "util-linux"), f"--net={self.netns}", "--", *args]
        args.append(str(len(self.overlays)))
        for overlay in self.overlays:
            args.extend(overlay.options())
        args += [bwrap, "--bind", str(self.root), "/", "--proc", "/proc", "--dev", "/dev"]
        for target in self.tmpfs:
            args += ["--tmpfs", target]
        for bind in self.binds:
            args += ["--ro-bind" if bind.read_only else "--bind", str(bind.source), bind.target]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.host_network and self.netns is None:
            args.append("--unshare-net")
        args += ["--hostname", self.hostname, "--die-with-parent", "--cap-add", "ALL", "--clearenv"]
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", **self.env}
        for name, value in sorted(env.items()):
            args += ["--setenv", name, value]
        args += ["--chdir", self.cwd, "--", *argv]
        return args

    def prepare(self) -> None:
        check_host()
        for overlay in self.overlays:
            overlay.prepare()

    def run(self, argv: Sequence[str], **kwargs: object) -> Result:
        """Run `argv` inside the sandbox and wait (keyword arguments as dgr.process.run)."""
        self.prepare()
        return run(self.command(argv), **kwargs)  # type: ignore[arg-type]

    def spawn(self, argv: Sequence[str], **popen: object) -> subprocess.Popen[bytes]:
        """Start `argv` inside the sandbox without waiting (for long-running containers)."""
        self.prepare()
        return subprocess.Popen(self.command(argv), start_new_session=True, **popen)  # type: ignore[call-overload,no-any-return]


def make_scaffold(directory: Path, dirs: Sequence[str] = (), files: Sequence[str] = ()) -> Path:
    """Create a layer of empty mount targets (`/proc`, `/dev`, `/tmp` always) at `directory`."""
    for rel in ("proc", "dev", "sys", "tmp", *dirs):
        (directory / rel.lstrip("/")).mkdir(parents=True, exist_ok=True)
    os.chmod(directory / "tmp", 0o1777)
    for rel in files:
        path = directory / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    return directory


@functools.cache
def check_host() -> None:
    """Fail early, with a hint, when the host cannot run sandboxes (not root, no overlayfs)."""
    if os.geteuid() != 0:
        raise ToolError("building and running images needs root", hint="run dgr as root (e.g. with sudo)")
    if not _has_overlay():
        try:
            run(["modprobe", "overlay"], check=False)
        except ToolError:
            pass
        if not _has_overlay():
            raise ToolError("Overlay filesystem is required", hint="modprobe overlay")


def _has_overlay() -> bool:
    try:
        lines = Path("/proc/filesystems").read_text().splitlines()
    except OSError:
        return False
    return any(line.split() == ["nodev", "overlay"] for line in lines)
