"""What a build script, a dependency's script or a test container may not do to the host.

Every sandbox runs in its own user namespace (dgr/userns.py): root inside is an unprivileged
id range outside. These tests try, from real build scripts, what a hostile project or a
downloaded image would try, and check that ownership still comes out right in both outputs.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dgr.cli import main

pytestmark = pytest.mark.integration

# Python's ctypes makes the calls; the builder gets the host's /usr (read-only for it).
OPEN_BY_HANDLE_PY = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Handle(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint), ("type", ctypes.c_int), ("data", ctypes.c_ubyte * 128)]
handle, mount_id = Handle(size=128), ctypes.c_int()
if libc.name_to_handle_at(-100, b"/dgr/aci-home", ctypes.byref(handle), ctypes.byref(mount_id), 0):
    sys.exit(f"name_to_handle_at failed: {errno.errorcode[ctypes.get_errno()]}")
fd = os.open("/dgr/aci-home", os.O_RDONLY)
opened = libc.open_by_handle_at(fd, ctypes.byref(handle), os.O_RDONLY)
print("open_by_handle_at:", "opened" if opened >= 0 else errno.errorcode[ctypes.get_errno()])
sys.exit(1 if opened >= 0 else 0)
"""

BUILDER_SCRIPT = """#!/bin/sh
set -e
ln -s usr/lib /lib
ln -s usr/lib64 /lib64
/usr/bin/python3 -I /dgr/aci-home/probe.py
if touch /usr/dgr-probe 2>/dev/null; then echo "wrote into the host's /usr"; exit 1; fi
echo "host /usr: not writable"
"""

# Runs in the image rootfs: each forbidden action must fail, the chown must work.
FORBIDDEN = r"""#!/dgr/bin/busybox sh
B=/dgr/bin/busybox
try() { if "$@" 2>/dev/null; then echo "ALLOWED: $*"; exit 1; else echo "refused: $*"; fi; }
try $B mknod /disk b 8 0
try $B mknod /null c 1 3
try $B sh -c 'echo "|/tmp/x" > /proc/sys/kernel/core_pattern'
try $B sh -c 'echo 1 > /sys/kernel/profiling'
$B mkdir /mnt-host
try $B mount -t ext4 /dev/vda /mnt-host
try $B mount -t tmpfs none /proc/sys
echo owned > /www && $B chown 33:33 /www
$B mkdir -p /srv && $B chown 1000:1000 /srv
echo setuid > /setuid && $B chmod 4755 /setuid
[ "$($B stat -c %u:%g /www)" = 33:33 ] || exit 1
echo "uid inside: $($B id -u)"
"""


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    project = tmp_path / "aci-hostile"
    files = {
        "aci-manifest.yml": (
            "name: example.com/aci-hostile:1\nbuilder:\n  mountPoints: [{from: /usr, to: /usr}]\n"
        ),
        "probe.py": OPEN_BY_HANDLE_PY,
        "templates/etc/motd.tmpl": "hello\n",  # files dgr writes into the layer itself
        "runlevels/builder/10.open-by-handle.sh": BUILDER_SCRIPT,
        "runlevels/build/10.forbidden.sh": FORBIDDEN,
    }
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    return project


def _owners_in_aci(aci: Path) -> dict[str, tuple[int, int, int]]:
    with tarfile.open(aci) as tar:
        return {m.name: (m.uid, m.gid, m.mode) for m in tar.getmembers()}


def _owners_in_oci(layout: Path) -> dict[str, tuple[int, int, int]]:
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    found: dict[str, tuple[int, int, int]] = {}
    for layer in manifest["layers"]:
        data = gzip.decompress((blobs / layer["digest"].split(":")[1]).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            found.update({m.name: (m.uid, m.gid, m.mode) for m in tar.getmembers()})
    return found


def _bwraps() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/exe").endswith("/bwrap"):
                found.add(int(entry))
        except OSError:
            continue
    return found


def test_build_scripts_hold_no_power_over_the_host(hostile: Path, dgr_home: Path) -> None:
    before = _bwraps()
    assert main(["-H", str(dgr_home), "-W", str(hostile), "build"]) == 0
    log = (hostile / "target" / "build.log").read_text()
    assert "open_by_handle_at: EPERM" in log
    assert "host /usr: not writable" in log
    for action in (
        "mknod /disk b",
        "mknod /null c",
        "core_pattern",
        "/sys/kernel",
        "mount -t ext4",
        "/proc/sys",
    ):
        assert any(line.startswith("refused: ") and action in line for line in log.splitlines()), action
    assert "ALLOWED" not in log
    assert "uid inside: 0" in log
    assert not Path("/usr/dgr-probe").exists()
    # no sandbox outlives the build (and its namespaces die with its processes); other
    # xdist workers may run sandboxes of their own meanwhile, so only ours are counted
    assert not [
        pid for pid in _bwraps() - before if str(hostile) in Path(f"/proc/{pid}/cmdline").read_text()
    ]


def test_ownership_set_in_the_sandbox_survives_in_both_outputs(hostile: Path, dgr_home: Path) -> None:
    assert main(["-H", str(dgr_home), "-W", str(hostile), "build"]) == 0
    target = hostile / "target"
    for owners, prefix in (
        (_owners_in_aci(target / "image.aci"), "rootfs/"),
        (_owners_in_oci(target / "oci"), ""),
    ):
        assert owners[prefix + "www"][:2] == (33, 33)
        assert owners[prefix + "srv"][:2] == (1000, 1000)
        assert owners[prefix + "setuid"][2] & 0o4000
        assert owners[prefix + "dgr/bin/busybox"][:2] == (0, 0)
        # everything else belongs to root: nothing shows a host id or nobody
        assert {(uid, gid) for uid, gid, _ in owners.values()} == {(0, 0), (33, 33), (1000, 1000)}
        assert owners[prefix + "dgr/templater.prepared"][:2] == (0, 0)
        assert prefix + "disk" not in owners and prefix + "null" not in owners
    # on the host, the layer is in the sandboxes' range, not real root's
    st = os.lstat(target / "layer" / "www")
    assert st.st_uid != 33 and st.st_uid >= 65536
