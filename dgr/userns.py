"""User namespaces: whose ids the processes of a sandbox hold on the host.

Two modes, as podman and buildah have them (see docs/security.md):

* **root**: dgr runs as real root. Every sandbox gets a new user namespace in which uid/gid
  0-65535 are the host ids `base`..`base+65535` of root's subordinate range in /etc/subuid and
  /etc/subgid (util-linux `unshare --map-users`, which calls newuidmap). dgr itself stays real
  root outside and shifts ownership where files cross the border: what it puts into a layer is
  given to the range (:meth:`IdMap.give_tree`), extracted layers are written shifted, and
  packaging writes the ids the container saw (:meth:`IdMap.container_uid`).
* **rootless**: dgr runs as an ordinary user with a subordinate range. The whole dgr process
  re-executes itself once in a user namespace where 0 is the user and 1-65535 are the range
  (newuidmap/newgidmap, as rootless podman's pause process); inside it ids are already what
  containers see (:data:`IDENTITY`), and sandboxes share that namespace.

Either way a process in a sandbox holds capabilities only in a user namespace that owns no
host resource: no open_by_handle_at, no /proc/sys or /sys writes, no device nodes, no host
mounts.
"""

from __future__ import annotations

import functools
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dgr.errors import ToolError
from dgr.process import require_tool, run, spawn

SIZE = 65536  # ids 0-65535 inside, what images and real distributions use
NOBODY = 65534
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
# Set in the environment of a dgr re-executed in its rootless user namespace.
IN_NAMESPACE_ENV = "_DGR_USERNS"


@dataclass(frozen=True)
class IdMap:
    """Container id `i` (0 <= i < SIZE) is host id `uid_base + i` / `gid_base + i`.

    `own` is True when sandboxes make a user namespace of their own with this map (root
    mode); False when dgr already runs inside one (rootless: the map is the identity).
    """

    uid_base: int
    gid_base: int
    own: bool = True

    @property
    def shifted(self) -> bool:
        return self.uid_base != 0 or self.gid_base != 0

    def host_uid(self, uid: int) -> int:
        """The host uid of container uid `uid` (ids the namespace cannot hold become nobody)."""
        if not self.shifted:
            return uid
        return self.uid_base + (uid if 0 <= uid < SIZE else NOBODY)

    def host_gid(self, gid: int) -> int:
        if not self.shifted:
            return gid
        return self.gid_base + (gid if 0 <= gid < SIZE else NOBODY)

    def container_uid(self, host_uid: int) -> int:
        """The uid a sandbox sees for a file owned by `host_uid` (nobody when unmapped)."""
        if not self.shifted:
            return host_uid
        uid = host_uid - self.uid_base
        return uid if 0 <= uid < SIZE else NOBODY

    def container_gid(self, host_gid: int) -> int:
        if not self.shifted:
            return host_gid
        gid = host_gid - self.gid_base
        return gid if 0 <= gid < SIZE else NOBODY

    def unshare_args(self) -> list[str]:
        """The `unshare` options that make a sandbox's user namespace (empty: none of its own)."""
        if not self.own:
            return []
        return [
            "--user",
            f"--map-users={self.uid_base},0,{SIZE}",
            f"--map-groups={self.gid_base},0,{SIZE}",
            "--setuid=0",
            "--setgid=0",
        ]

    def give(self, path: Path | str, uid: int = 0, gid: int = 0) -> None:
        """Make `path` (not followed) owned by container ids `uid`:`gid`."""
        if self.shifted:
            os.chown(path, self.host_uid(uid), self.host_gid(gid), follow_symlinks=False)

    def give_tree(self, root: Path) -> None:
        """Make everything under `root` owned by container root (files dgr made for a layer)."""
        if not self.shifted:
            return
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                self.give(os.path.join(dirpath, name))
        self.give(root)

    def tag(self) -> str:
        """A short name for cache folders whose ownership depends on the map."""
        return f"u{self.uid_base}g{self.gid_base}"


IDENTITY = IdMap(0, 0, own=False)


@dataclass(frozen=True)
class SubRange:
    """One line of /etc/subuid or /etc/subgid: `count` ids from `start`."""

    start: int
    count: int


def subordinate_range(file: Path, user: str, uid: int) -> SubRange | None:
    """The first range of at least SIZE ids that `file` gives `user` (by name or uid)."""
    try:
        lines = file.read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ToolError(f"cannot read {file}: {exc.strerror}") from None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            found = SubRange(int(fields[1]), int(fields[2]))
        except ValueError:
            continue
        if found.count >= SIZE:
            return found
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _ranges(uid: int) -> tuple[SubRange, SubRange]:
    """The user's subordinate uid and gid ranges, or a ToolError saying how to get them."""
    user = _user_name(uid)
    uids = subordinate_range(SUBUID, user, uid)
    gids = subordinate_range(SUBGID, user, uid)
    if uids is None or gids is None:
        missing = " and ".join(str(f) for f, r in ((SUBUID, uids), (SUBGID, gids)) if r is None)
        example = "root:100000:65536" if uid == 0 else f"{user}:200000:65536"
        raise ToolError(
            f"user {user} has no subordinate id range of {SIZE} ids in {missing}",
            hint=f"add a line such as {example} to /etc/subuid and /etc/subgid "
            "(scripts/bootstrap does it for root; `usermod --add-subuids`), see docs/security.md",
        )
    return uids, gids


def in_rootless_namespace() -> bool:
    return os.environ.get(IN_NAMESPACE_ENV) == "1"


@functools.cache
def current() -> IdMap:
    """The id map of this dgr process's sandboxes."""
    if in_rootless_namespace():
        return IDENTITY
    if os.geteuid() != 0:
        _ranges(os.geteuid())  # the clearer error when the user has no range at all
        raise ToolError(
            "dgr is not in its user namespace",
            hint="run it through the dgr command or the pytest plugin, which enter it as needed",
        )
    uids, gids = _ranges(0)
    return IdMap(uids.start, gids.start)


def other_namespace(path: str) -> bool:
    """Whether the user namespace at `path` (`/proc/PID/ns/user`) is not ours (a root-mode
    sandbox's, which nsenter must enter too)."""
    try:
        return os.stat(path).st_ino != os.stat("/proc/self/ns/user").st_ino
    except OSError:
        return False


# --- rootless: dgr re-executes itself in its user namespace ---------------------------------

# Waits until the parent wrote the id maps (it closes the pipe), then becomes the command.
_WAIT_FOR_MAPS = (
    "import os,sys;f=int(sys.argv[1]);os.read(f,1);os.close(f);os.execvp(sys.argv[2],sys.argv[2:])"
)


def needs_rootless_namespace() -> bool:
    return os.geteuid() != 0 and not in_rootless_namespace()


def run_in_rootless_namespace(argv: Sequence[str]) -> int:
    """Run `argv` in a new user namespace (0 = this user, 1-65535 = its subordinate range)
    and return its exit code. Signals that would stop us are passed on to it."""
    uid, gid = os.getuid(), os.getgid()
    uids, gids = _ranges(uid)
    newuidmap = require_tool("newuidmap", "uidmap")
    newgidmap = require_tool("newgidmap", "uidmap")
    unshare = require_tool("unshare", "util-linux")
    read_end, write_end = os.pipe()
    # Inside, the user is uid 0: tools that name it from its uid (pytest's temporary folder)
    # must still find the user's name.
    name = _user_name(uid)
    env = {"USER": name, "LOGNAME": name, **os.environ, IN_NAMESPACE_ENV: "1"}
    # A session of its own: a Ctrl-C on the terminal reaches it once, forwarded by us.
    child = spawn(
        [unshare, "--user", "--", sys.executable, "-I", "-S", "-c", _WAIT_FOR_MAPS, str(read_end), *argv],
        pass_fds=(read_end,),
        env=env,
    )
    os.close(read_end)
    try:
        _wait_unshared(child)
        _write_maps(child.pid, newuidmap, uid, uids, "uid")
        _write_maps(child.pid, newgidmap, gid, gids, "gid")
    except BaseException:
        child.kill()
        child.wait()
        os.close(write_end)
        raise
    os.close(write_end)
    return _wait_forwarding(child)


def _wait_unshared(child: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until `child` (unshare) is in its new user namespace: only then can its maps be
    written."""
    deadline = time.monotonic() + timeout
    while not other_namespace(f"/proc/{child.pid}/ns/user"):
        if child.poll() is not None or time.monotonic() > deadline:
            raise ToolError("could not create dgr's user namespace (unshare --user)")
        time.sleep(0.001)


def _write_maps(pid: int, tool: str, own: int, sub: SubRange, kind: str) -> None:
    # 0 is the user itself (its files stay its own); 1-65535 come from its subordinate range.
    args = [tool, str(pid), "0", str(own), "1", "1", str(sub.start), str(SIZE - 1)]
    done = run(args, check=False)
    if done.returncode != 0:
        raise ToolError(
            f"cannot map the {kind}s of dgr's user namespace: {done.output.strip()}",
            hint="check the subordinate ranges in /etc/subuid and /etc/subgid (docs/security.md)",
        )


def _wait_forwarding(child: subprocess.Popen[bytes]) -> int:
    def forward(signum: int, _frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, forward)
    code = child.wait()
    return 128 - code if code < 0 else code


def rerun_in_rootless_namespace() -> int:
    """Run this same command line again in dgr's rootless user namespace; its exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    return run_in_rootless_namespace([sys.executable, *sys.orig_argv[1:]])
