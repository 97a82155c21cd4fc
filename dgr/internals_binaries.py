"""The host binaries in `/dgr`: busybox, the Python interpreter and the shared libraries they load.

Also where the interpreter goes under `/dgr/lib`, and the command that starts it through the
bundle's own glibc loader (see dgr/internals.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dgr.errors import DgrError, ToolError
from dgr.process import require_tool, run

# Where the tree lives inside an image.
MOUNT = "/dgr"
BUSYBOX = f"{MOUNT}/bin/busybox"  # in every image and sandbox root
# The bundled interpreter, relative to MOUNT/lib; its `._pth` file sits next to it.
PYTHON_DIR = "python"
# The one sys.path entry of the bundled interpreter, relative to the interpreter's folder.
MODULES_DIR = "modules"

BUSYBOX_PACKAGE = "busybox-static"
STRIP_PACKAGE = "binutils"
TIMEOUT = 120.0


class InternalsError(DgrError):
    """The dgr internals (busybox, prestart, bundled templater) could not be built."""


@dataclass(frozen=True)
class Interpreter:
    """The base Python interpreter the bundle is made from (the one running dgr)."""

    executable: Path
    version: str  # "3.11"
    stdlib: Path
    platstdlib: Path

    @classmethod
    def current(cls) -> Interpreter:
        base = getattr(sys, "_base_executable", None) or sys.executable
        paths = sysconfig.get_paths()
        return cls(
            executable=Path(os.path.realpath(base)),
            version=f"{sys.version_info.major}.{sys.version_info.minor}",
            stdlib=Path(paths["stdlib"]).resolve(),
            platstdlib=Path(paths["platstdlib"]).resolve(),
        )

    @property
    def name(self) -> str:
        return f"python{self.version}"


def find_busybox() -> Path:
    """The host's static busybox (package busybox-static)."""
    path = Path(os.path.realpath(require_tool("busybox", BUSYBOX_PACKAGE)))
    if shared_libraries(path):
        raise ToolError(
            f"{path} is not statically linked: it cannot run in an image",
            hint=f"apt-get install {BUSYBOX_PACKAGE}",
        )
    return path


def install_libraries(binaries: Iterable[Path], lib_dir: Path) -> str:
    """Copy the shared libraries `binaries` need (and the glibc loader) into `lib_dir`.

    Returns the loader's file name. Libraries are named by their soname, as the loader
    looks them up.
    """
    needed: dict[str, Path] = {}
    loader: Path | None = None
    for binary in binaries:
        for name, path in shared_libraries(binary).items():
            if name.startswith("ld-linux"):
                loader = path
            else:
                needed.setdefault(name, path)
    if loader is None:
        raise InternalsError("could not find the dynamic loader of the Python interpreter")
    shutil.copyfile(loader, lib_dir / loader.name)
    for name, path in sorted(needed.items()):
        shutil.copyfile(path, lib_dir / name)
        if name.startswith("libpython"):
            strip(lib_dir / name)  # pyenv-like builds keep debug info: 23 MB -> 6 MB
    return loader.name


def shared_libraries(binary: Path) -> dict[str, Path]:
    """The shared libraries `binary` loads (soname -> resolved host path), as ldd reports.

    Empty for a static binary.
    """
    result = run(["ldd", binary], check=False, timeout=TIMEOUT, error=InternalsError)
    if result.returncode != 0:
        if "not a dynamic executable" in result.output or "statically linked" in result.output:
            return {}
        raise InternalsError(f"ldd {binary} failed", details=result.tail())
    found: dict[str, Path] = {}
    for line in result.output.splitlines():
        parts = line.split()
        if "=>" in parts:
            name, target = parts[0], parts[parts.index("=>") + 1]
            if target == "not":
                raise InternalsError(f"{binary} needs {name}, which is not found on this host")
            found[name] = Path(os.path.realpath(target))
        elif parts and parts[0].startswith("/"):
            found[Path(parts[0]).name] = Path(os.path.realpath(parts[0]))
    return found


def strip(*binaries: Path) -> None:
    """Remove symbols and debug info from `binaries`, in place (deterministic)."""
    if binaries:
        tool = require_tool("strip", STRIP_PACKAGE)
        run([tool, "--strip-unneeded", *binaries], timeout=TIMEOUT, error=InternalsError)


def python_command(lib: str, loader: str, interpreter: Interpreter) -> list[str]:
    """The command starting the bundled interpreter of the tree whose `lib` folder is `lib`.

    The bundle's glibc loader runs the interpreter with the bundle's libraries only: not
    the image's (`--library-path`, and `--inhibit-cache` skips the image's ld.so.cache).
    Children of the templater (checkCmd) are not affected. `-X utf8`: files are UTF-8
    whatever the locale of the container.
    """
    python = f"{lib}/{PYTHON_DIR}/{interpreter.name}"
    return [f"{lib}/{loader}", "--inhibit-cache", "--library-path", lib, python, "-X", "utf8"]
