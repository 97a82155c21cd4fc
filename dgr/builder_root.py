"""The default builder root: a busybox-only toolset, built once per busybox binary and cached.

Builder runlevel scripts run here with the image rootfs at `$ROOTFS`; `busybox --list-full`
decides where each applet link goes, so `/bin/sh`, `/usr/bin/awk`... resolve as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from dgr import userns
from dgr.cache import cached_folder
from dgr.internals_binaries import BUSYBOX_PACKAGE, find_busybox
from dgr.process import require_tool, run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def busybox_root(cache: Path) -> Path:
    """A directory holding busybox and a link for each applet, plus minimal /etc files."""
    busybox = Path(os.path.realpath(require_tool("busybox", BUSYBOX_PACKAGE)))

    def produce(root: Path) -> None:
        find_busybox()  # checks, once, that it is the static one
        (root / "bin").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for rel in run([str(busybox), "--list-full"]).output.split():
            link = root / rel
            if not (link.exists() or link.is_symlink()):
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink("/bin/busybox", link)
        etc = root / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (etc / "group").write_text("root:x:0:\n")
        (root / "root").mkdir(mode=0o700)
        root.chmod(0o755)
        ids.give_tree(root)

    ids = userns.current()
    return cached_folder(cache / "builder-busybox" / f"{_digest(busybox)}-{ids.tag()}", produce)
