"""Isolated execution: every command dgr runs inside a root filesystem goes through here.

A sandbox is bubblewrap (`bwrap`) started inside a new user namespace and a private mount
namespace made by `unshare`, where the overlayfs mounts it needs are made first:
- root in the sandbox is an unprivileged id range on the host (dgr/userns.py), so scripts can
  chown, set setuid bits and run apt, but hold no capability over the host; bwrap keeps only
  the capabilities a container engine gives by default (:data:`CAPABILITIES`);
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
from typing import Any

from dgr import userns
from dgr.errors import DgrError, ToolError
from dgr.process import Result, require_tool, run, spawn
from dgr.userns import IdMap

# Runs as dgr (real root, or root of the rootless namespace) in the private mount namespace:
# mount each overlay, bind the host folders into the root, show the root at ROOT_VIEW, then
# become the rest of the command line (the sandbox's user namespace, then bwrap). Mounting
# here, not from inside the sandbox's user namespace, lets an unprivileged root use folders
# it could not reach (a project under /root, mode 0700), and locks those mounts: the sandbox
# cannot undo them. ROOT_VIEW is on a tmpfs of this namespace only, so that the sandbox's root
# can reach it whatever the modes of the folders above the real root.
_MOUNT_AND_EXEC = r"""
set -e
count=$1; shift
while [ "$count" -gt 0 ]; do
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
  shift 4
  count=$((count - 1))
done
root=$(realpath -e "$1"); shift
count=$1; shift
while [ "$count" -gt 0 ]; do
  target=$(realpath -e "$root$3")
  case $target in
    "$root"/*) ;;
    *) echo "dgr: mount target $3 is a link that leads out of the root" >&2; exit 125 ;;
  esac
  mount --rbind "$2" "$target"
  if [ "$1" = ro ]; then mount -o remount,bind,ro "$target"; fi
  shift 3
  count=$((count - 1))
done
view=/dev/shm/root
mount -t tmpfs -o mode=0755,size=16k dgr-sandbox "${view%/*}"
mkdir "$view"
mount --rbind "$root" "$view"
exec "$@"
"""
ROOT_VIEW = "/dev/shm/root"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/dgr/bin"

# podman's and docker's default set: enough to chown, drop privileges (apt's _apt), set
# file capabilities and bind low ports; all of them count only in the sandbox's user namespace.
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)


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

    def prepare(self, ids: IdMap) -> None:
        """Create the upper, work and mount point directories, owned by the sandbox's root."""
        for path in (self.upper, self.work, self.mountpoint):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.upper, self.work):
            ids.give(path)


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
    # Join this network namespace (`/proc/PID/ns/net` of a pod's first container) and, when
    # that process has one of its own, its user namespace, instead of making new ones.
    netns: str | None = None
    ids: IdMap | None = None  # default: userns.current()

    def id_map(self) -> IdMap:
        return self.ids if self.ids is not None else userns.current()

    def command(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` in this sandbox."""
        args = [require_tool("unshare", "util-linux"), "--mount", "--propagation", "private", "--"]
        if self.netns is not None:
            # nsenter execs (no fork), so bwrap stays our child and --die-with-parent holds.
            args = [require_tool("nsenter", "util-linux"), f"--net={self.netns}", "--", *args]
        args += ["/bin/sh", "-c", _MOUNT_AND_EXEC, "sh", str(len(self.overlays))]
        for overlay in self.overlays:
            args.extend(overlay.options())
        args += [str(self.root), str(len(self.binds))]
        for bind in self.binds:
            args += ["ro" if bind.read_only else "rw", str(bind.source), bind.target]
        return [*args, *self.user_namespace(), *self.bwrap(argv)]

    def user_namespace(self) -> list[str]:
        """The command that puts the sandbox in its user namespace: a new one, or the one of
        the container whose network it joins (nsenter then makes it root there)."""
        if self.netns is not None:
            user = os.path.join(os.path.dirname(self.netns), "user")
            if userns.other_namespace(user):
                return [require_tool("nsenter", "util-linux"), f"--user={user}", "--"]
            return []
        unshare = self.id_map().unshare_args()
        return [require_tool("unshare", "util-linux"), *unshare, "--"] if unshare else []

    def bwrap(self, argv: Sequence[str]) -> list[str]:
        """bwrap's command line: the root prepared at ROOT_VIEW, /proc, /dev, the namespaces."""
        args = [
            require_tool("bwrap", "bubblewrap"),
            "--bind",
            ROOT_VIEW,
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        for target in self.tmpfs:
            args += ["--tmpfs", target]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.host_network and self.netns is None:
            args.append("--unshare-net")
        args += ["--hostname", self.hostname, "--die-with-parent", "--cap-drop", "ALL"]
        for capability in CAPABILITIES:
            args += ["--cap-add", capability]
        args.append("--clearenv")
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", **self.env}
        for name, value in sorted(env.items()):
            args += ["--setenv", name, value]
        args += ["--chdir", self.cwd, "--", *argv]
        return args

    def prepare(self) -> None:
        check_host()
        ids = self.id_map()
        for overlay in self.overlays:
            overlay.prepare(ids)

    def run(self, argv: Sequence[str], **kwargs: object) -> Result:
        """Run `argv` inside the sandbox and wait (keyword arguments as dgr.process.run)."""
        self.prepare()
        return run(self.command(argv), **kwargs)  # type: ignore[arg-type]

    def spawn(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside the sandbox without waiting (for long-running containers)."""
        self.prepare()
        return spawn(self.command(argv), **popen)


def make_scaffold(directory: Path, dirs: Sequence[str] = (), files: Sequence[str] = ()) -> Path:
    """Create a layer of empty mount targets (`/proc`, `/dev`, `/tmp` always) at `directory`,
    owned by the sandboxes' root."""
    for rel in ("proc", "dev", "sys", "tmp", *dirs):
        (directory / rel.lstrip("/")).mkdir(parents=True, exist_ok=True)
    os.chmod(directory / "tmp", 0o1777)
    for rel in files:
        path = directory / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    userns.current().give_tree(directory)
    return directory


@functools.cache
def check_host() -> None:
    """Fail early, with a hint, when the host cannot run sandboxes (no id range, no user
    namespaces, no overlayfs)."""
    ids = userns.current()
    if ids.own:
        probe = run([require_tool("unshare", "util-linux"), "--user", "true"], check=False)
        if probe.returncode != 0:
            raise ToolError(
                f"cannot create user namespaces here: {probe.output.strip()}",
                hint="dgr's sandboxes need them: not from inside a chroot (use pivot_root or a "
                "container), and with user.max_user_namespaces above 0 (docs/security.md)",
            )
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
