"""Id maps: what crosses the border between the host and a sandbox's user namespace."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dgr import userns
from dgr.errors import ToolError
from dgr.extract import extract_layer
from dgr.layer import TarWriter
from dgr.tarsink import TarSink
from dgr.userns import IDENTITY, NOBODY, IdMap, SubRange, subordinate_range

SHIFT = IdMap(100000, 200000)


def test_ids_shift_both_ways() -> None:
    assert SHIFT.host_uid(33) == 100033 and SHIFT.host_gid(33) == 200033
    assert SHIFT.container_uid(100033) == 33 and SHIFT.container_gid(200033) == 33
    # what the namespace cannot hold is nobody, on both sides
    assert SHIFT.host_uid(70000) == 100000 + NOBODY
    assert SHIFT.container_uid(0) == NOBODY
    assert IDENTITY.host_uid(1234) == 1234 and IDENTITY.container_uid(1234) == 1234


def test_unshare_arguments_map_the_whole_range() -> None:
    assert SHIFT.unshare_args() == [
        "--user",
        "--map-users=100000,0,65536",
        "--map-groups=200000,0,65536",
        "--setuid=0",
        "--setgid=0",
    ]
    assert IDENTITY.unshare_args() == []  # rootless: sandboxes share dgr's namespace


def test_subordinate_range_by_name_or_uid(tmp_path: Path) -> None:
    file = tmp_path / "subuid"
    file.write_text("alice:100000:1000\nalice:300000:65536\n1001:400000:65536\nbroken line\n")
    assert subordinate_range(file, "alice", 1000) == SubRange(300000, 65536)  # first range big enough
    assert subordinate_range(file, "bob", 1001) == SubRange(400000, 65536)
    assert subordinate_range(file, "carol", 1002) is None
    assert subordinate_range(tmp_path / "missing", "alice", 1000) is None


def test_missing_range_says_how_to_add_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setattr(userns, "SUBUID", empty)
    monkeypatch.setattr(userns, "SUBGID", empty)
    with pytest.raises(ToolError, match="no subordinate id range") as info:
        userns._ranges(0)
    assert "root:100000:65536" in str(info.value) and "/etc/subuid" in str(info.value)


def test_ordinary_user_outside_the_namespace_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    userns.current.cache_clear()
    monkeypatch.setattr(userns.os, "geteuid", lambda: 1000)
    monkeypatch.delenv(userns.IN_NAMESPACE_ENV, raising=False)
    monkeypatch.setattr(userns, "_ranges", lambda uid: (SubRange(200000, 65536), SubRange(200000, 65536)))
    try:
        with pytest.raises(ToolError, match="not in its user namespace"):
            userns.current()
    finally:
        userns.current.cache_clear()


def test_give_tree_shifts_what_dgr_made(tmp_path: Path) -> None:
    (tmp_path / "layer/etc").mkdir(parents=True)
    (tmp_path / "layer/etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (tmp_path / "layer/link").symlink_to("/nowhere")
    SHIFT.give_tree(tmp_path / "layer")
    for rel in ("", "etc", "etc/passwd", "link"):
        st = os.lstat(tmp_path / "layer" / rel)
        assert (st.st_uid, st.st_gid) == (100000, 200000), rel


def test_packaging_writes_the_ids_the_sandbox_saw(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "www").write_text("x")
    os.chown(layer / "www", 100033, 200033)
    out = io.BytesIO()
    sink = TarSink(out)
    writer = TarWriter(sink, SHIFT)
    writer.add_tree(layer)
    writer.close()
    sink.close()
    member = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getmember("www")
    assert (member.uid, member.gid) == (33, 33)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def _setuid_with_capability() -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo("ping")
    info.mode = 0o4755
    info.uid = info.gid = 33
    # a valid VFS_CAP_REVISION_2 value granting cap_net_raw (bit 13), effective
    cap = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)
    info.pax_headers = {"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")}
    return info, b"binary"


def test_extraction_shifts_owners_and_drops_devices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device = tarfile.TarInfo("disk")
    device.type = tarfile.BLKTYPE
    device.devmajor, device.devminor = 8, 0
    extract_layer(_tar(_setuid_with_capability(), (device, b"")), tmp_path / "dest", ids=SHIFT)
    st = os.lstat(tmp_path / "dest/ping")
    assert (st.st_uid, st.st_gid) == (100033, 200033)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # trusted: kept
    assert os.getxattr(tmp_path / "dest/ping", "security.capability")
    assert not os.path.lexists(tmp_path / "dest/disk")
    assert "dropped device nodes of 1 entry: disk" in caplog.text


def test_untrusted_layers_lose_setuid_bits_and_capabilities(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extract_layer(_tar(_setuid_with_capability()), tmp_path / "dest", trusted=False)
    st = os.lstat(tmp_path / "dest/ping")
    assert stat.S_IMODE(st.st_mode) == 0o755
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "dest/ping", "security.capability")
    assert "dropped file capabilities of 1 entry: ping" in caplog.text
    assert "dropped setuid/setgid bits of 1 entry: ping" in caplog.text
