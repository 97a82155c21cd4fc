"""A private, throw-away podman for interop tests.

Podman on our hosts needs a containers.conf (runc, cgroupfs, file events, ulimits that do
not need `cap_sys_resource`; see reference/host-notes.md) and its state kept private with
`--root/--runroot/--tmpdir`. :class:`Podman` puts all of that under one directory, loads OCI
layouts into its store with skopeo, runs images, and on :meth:`cleanup` removes its
containers and images, unmounts whatever the storage driver mounted under the directory
and deletes it, so that nothing is left in /proc/self/mountinfo.

    with Podman(tmp_path / "podman") as podman:
        image = podman.load_oci(layout, "1.0")
        assert podman.run(image, "echo", "ok").output == "ok\\n"
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from dgr.process import Result, run

RUNROOT_MAX = 50
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` in this process's mount table, deepest first."""
    prefix = os.path.realpath(root)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


class Podman:
    """podman with its storage, run state, temp files and config all under `root`."""

    def __init__(self, root: Path, *, timeout: float = 120) -> None:
        self.root = root
        self.storage = root / "storage"
        # podman refuses a runroot longer than 50 characters: use a short one under /tmp then.
        self.runroot = root / "run"
        if len(str(self.runroot)) > RUNROOT_MAX:
            self.runroot = Path(tempfile.mkdtemp(prefix="dgr-podman-", dir="/tmp"))
        self.tmpdir = root / "tmp"
        self.timeout = timeout
        for path in (self.storage, self.runroot, self.tmpdir):
            path.mkdir(parents=True, exist_ok=True)
        self.conf = root / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf), "TMPDIR": str(self.tmpdir)}

    @property
    def store(self) -> str:
        """The skopeo transport prefix for this podman's image store."""
        return f"containers-storage:[overlay@{self.storage}+{self.runroot}]"

    def podman(self, *args: str, check: bool = True) -> Result:
        """`podman ARGS` against this private state."""
        base = [
            "podman",
            "--root",
            str(self.storage),
            "--runroot",
            str(self.runroot),
            "--tmpdir",
            str(self.tmpdir),
        ]
        return run([*base, *args], env=self.env, timeout=self.timeout, check=check)

    def load_oci(self, layout: Path, ref: str, name: str = "dgr-test") -> str:
        """Copy the image tagged `ref` of OCI layout `layout` into the store; its podman reference."""
        image = f"localhost/{name}:{ref}"
        run(
            ["skopeo", "copy", "--quiet", f"oci:{layout}:{ref}", self.store + image],
            env=self.env,
            timeout=self.timeout,
        )
        return image

    def run(self, image: str, *args: str, entrypoint: str | None = None, check: bool = True) -> Result:
        """`podman run --rm --network=none [--entrypoint E] IMAGE ARGS`; output merged."""
        options = ["run", "--rm", "--network=none"]
        if entrypoint is not None:
            options.append(f"--entrypoint={entrypoint}")
        return self.podman(*options, image, *args, check=check)

    def kube_play(self, yaml: Path, *, network: str = "none") -> Result:
        """`podman kube play --network NETWORK YAML`: start the Kubernetes Pod it describes."""
        return self.podman("kube", "play", f"--network={network}", str(yaml))

    def cleanup(self) -> None:
        """Remove pods, containers and images, unmount everything under our directories, delete them."""
        if self.root.exists():
            self.podman("pod", "rm", "--all", "--force", "--time=0", check=False)
            self.podman("rm", "--all", "--force", check=False)
            self.podman("rmi", "--all", "--force", check=False)
        for directory in (self.root, self.runroot):
            for point in mounts_under(directory):
                run(["umount", point], check=False)
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Podman:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()
