"""The default builder root: a busybox-only toolset, built once per busybox binary and cached.

Builder runlevel scripts run here with the image rootfs at `$ROOTFS`; `busybox --list-full`
decides where each applet link goes, so `/bin/sh`, `/usr/bin/awk`... resolve as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from filelock import FileLock

from dgr.errors import ToolError
from dgr.process import require_tool, run

BUSYBOX_PACKAGE = "busybox-static"


def host_busybox() -> Path:
    """The host's static busybox (Debian's busybox-static)."""
    path = Path(require_tool("busybox", BUSYBOX_PACKAGE))
    result = run(["file", "-b", str(path)], check=False) if shutil.which("file") else None
    if result is not None and "dynamically linked" in result.output:
        raise ToolError(f"{path} is dynamically linked", hint=f"apt-get install {BUSYBOX_PACKAGE}")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def busybox_root(cache: Path) -> Path:
    """A directory holding busybox and a link for each applet, plus minimal /etc files."""
    busybox = host_busybox()
    dest = cache / "builder-busybox" / _digest(busybox)
    done = dest.with_name(dest.name + ".complete")
    if done.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if done.exists():
            return dest
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "bin").mkdir(parents=True)
        shutil.copy2(busybox, tmp / "bin" / "busybox")
        applets = run([str(busybox), "--list-full"]).output.split()
        for rel in applets:
            link = tmp / rel
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/bin/busybox", link)
        etc = tmp / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (etc / "group").write_text("root:x:0:\n")
        (tmp / "root").mkdir(mode=0o700)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
        done.touch()
    return dest
