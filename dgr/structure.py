"""Structure checks of a built image, without starting its app (container-structure-test's
metadata, file-existence, file-content and command tests; docs/testing.md#structure-checks).

:class:`ImageView` wraps a :class:`dgr.build.BuildResult`: its OCI image config as engines
read it (`target/oci`), and paths and commands as seen in a throw-away container of the
image's layers, started without prestart (the image as built: no templates rendered).

Paths are looked at from inside such a container rather than in the layers on disk: the
kernel then applies the overlay (whiteouts and opaque folders of OCI dependencies, symlinked
parent folders) and the user namespace (owners on disk are shifted into the sandbox range),
so the mode and owner are exactly what the container sees, at the cost of one sandbox start
per call.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from dgr.container import Container, image_spec
from dgr.errors import ContainerError, DgrError
from dgr.internals_binaries import BUSYBOX
from dgr.oci import read_oci_layout
from dgr.process import Result

if TYPE_CHECKING:
    from dgr.images import BuildResult

# lstat of "$1": raw mode (hex), uid, gid, size; then the target of a symlink. Exit 3: missing.
_STAT = (
    '[ -e "$1" ] || [ -L "$1" ] || exit 3; '
    'stat -c "%f %u %g %s" -- "$1" && { [ ! -L "$1" ] || readlink -- "$1"; }'
)
_MISSING = 3
_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char device",
    stat.S_IFBLK: "block device",
}


@dataclass(frozen=True)
class ImageConfig:
    """The OCI image config of the image (its `config` object), as engines read it."""

    entrypoint: tuple[str, ...]  # dgr's start wrapper: prestart, then the Cmd
    cmd: tuple[str, ...]  # the app's exec
    env: dict[str, str]
    user: str
    working_dir: str
    ports: frozenset[str]  # "8080/tcp"
    volumes: frozenset[str]
    labels: dict[str, str]
    raw: dict[str, Any]  # the whole image config (created, architecture, rootfs, history...)

    @property
    def exec(self) -> tuple[str, ...]:
        """What an engine runs: the entrypoint followed by the command."""
        return (*self.entrypoint, *self.cmd)


@dataclass(frozen=True)
class PathInfo:
    """A path of the image as a container sees it (not following a last symlink)."""

    path: str
    st_mode: int
    uid: int
    gid: int
    size: int
    target: str | None = None  # what a symlink points to

    @property
    def kind(self) -> str:
        """file, directory, symlink, fifo, socket, char device or block device."""
        return _KINDS.get(stat.S_IFMT(self.st_mode), "unknown")

    @property
    def mode(self) -> int:
        """The permission bits, setuid, setgid and sticky included (`0o755`)."""
        return stat.S_IMODE(self.st_mode)

    @property
    def permissions(self) -> str:
        """As `ls -l` writes them, the way container-structure-test compares them: `-rwxr-xr-x`."""
        return stat.filemode(self.st_mode)

    @property
    def owner(self) -> str:
        """`uid:gid`."""
        return f"{self.uid}:{self.gid}"


class ImageView:
    """A built image to check without starting its app. Unknown attributes are the build
    result's (`name`, `manifest`, `workspace`, `image_id`, `layers`...)."""

    def __init__(
        self, result: BuildResult, *, fail: Callable[[DgrError], NoReturn] | None = None, timeout: float = 60
    ) -> None:
        self.result = result
        self.timeout = timeout
        self._fail = fail
        self._config: ImageConfig | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "result":  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.result, name)

    def fail(self, error: DgrError) -> NoReturn:
        """How a check that cannot be made ends: `error` raised, or given to `fail` (the
        pytest plugin fails the test with it)."""
        if self._fail is not None:
            self._fail(error)
        raise error

    @property
    def config(self) -> ImageConfig:
        """The image's OCI config (from `target/oci`, read once)."""
        if self._config is None:
            try:
                _, document = read_oci_layout(self.result.workspace.oci)
                found = document.get("config") or {}
                env = dict(e.partition("=")[::2] for e in found.get("Env") or [])
                self._config = ImageConfig(
                    entrypoint=tuple(found.get("Entrypoint") or ()),
                    cmd=tuple(found.get("Cmd") or ()),
                    env=env,
                    user=found.get("User") or "",
                    working_dir=found.get("WorkingDir") or "",
                    ports=frozenset(found.get("ExposedPorts") or {}),
                    volumes=frozenset(found.get("Volumes") or {}),
                    labels=dict(found.get("Labels") or {}),
                    raw=document,
                )
            except DgrError as exc:
                self.fail(exc)
        return self._config

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        prestart: bool = False,
        timeout: float | None = None,
    ) -> Result:
        """Run `argv` in a throw-away container of the image (its environment and working
        directory, `env` added) and remove it; returns `returncode` and `output` (stdout and
        stderr merged). Without prestart by default: the image as built."""
        if not argv:
            self.fail(
                DgrError("no command to run in the image", hint="give a list such as ['/bin/ls', '/']")
            )
        spec = dataclasses.replace(image_spec(self.result, env=env, exec_=argv), prestart=prestart)
        try:
            return Container(spec).run(timeout=self.timeout if timeout is None else timeout)
        except DgrError as exc:
            self.fail(exc)

    def output(self, argv: Sequence[str], **options: Any) -> str:
        """The output of `argv` (as :meth:`run`), which must exit 0."""
        result = self.run(argv, **options)
        if result.returncode != 0:
            self.fail(self._error(f"{list(argv)} exited with {result.returncode}", result))
        return result.output

    def lookup(self, path: str) -> PathInfo | None:
        """`path` in the image (not following a last symlink), or None when it has none."""
        result = self.run([BUSYBOX, "sh", "-c", _STAT, "sh", self._absolute(path)])
        if result.returncode == _MISSING:
            return None
        lines = result.output.splitlines()
        try:
            if result.returncode != 0:
                raise ValueError
            raw_mode, uid, gid, size = lines[0].split()
            target = lines[1] if stat.S_ISLNK(int(raw_mode, 16)) else None
            return PathInfo(path, int(raw_mode, 16), int(uid), int(gid), int(size), target)
        except (ValueError, IndexError):
            self.fail(self._error(f"cannot stat {path}", result))

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def path(self, path: str) -> PathInfo:
        """`path` in the image, which must exist."""
        found = self.lookup(path)
        if found is None:
            self.fail(DgrError(f"{path} does not exist in image {self.result.name}"))
        return found

    def read_file(self, path: str) -> str:
        """The text of the file `path` of the image, which must exist."""
        result = self.run([BUSYBOX, "cat", "--", self._absolute(path)])
        if result.returncode != 0:
            self.path(path)  # fails when missing
            self.fail(self._error(f"cannot read {path}", result))
        return result.output

    def _absolute(self, path: str) -> str:
        if not path.startswith("/"):
            self.fail(DgrError(f"{path!r} is not an absolute path", hint="paths in the image start with /"))
        return path

    def _error(self, message: str, result: Result) -> ContainerError:
        return ContainerError(f"{message} in image {self.result.name}", details=result.output)
