from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from dgr.errors import BuildError
from dgr.extract import extract_aci_rootfs, extract_layer
from dgr.layer import (
    OPAQUE_MARKER,
    LayerReport,
    TarWriter,
    Whiteouts,
    atomic_file,
    write_layer,
)
from dgr.tarsink import CHUNK, StreamDigests, TarSink


def make_tree(root: Path) -> Path:
    """A small layer: files, dirs, a symlink, a hard link, a fifo and a device."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "bin/tool", 0o4755)
    os.link(root / "bin/tool", root / "bin/tool-again")
    (root / "bin/sh").symlink_to("tool")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chown(root / "etc/hostname", 1234, 5678)
    os.setxattr(root / "etc/hostname", "user.note", b"\xff\x00binary")
    for path in (root / "etc/hostname", root / "bin/tool"):
        os.utime(path, (1_600_000_000, 1_600_000_000))
    return root


def whiteout(path: Path) -> None:
    """An overlayfs whiteout, as the kernel writes it in the upper dir."""
    os.mknod(path, stat.S_IFCHR, 0)


def opaque(path: Path) -> None:
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def pack(
    source: Path | list[Path],
    *,
    prefix: str = "",
    whiteouts: Whiteouts = Whiteouts.OCI,
    gzip: bool = False,
    hashes: tuple[str, ...] = ("sha256",),
) -> tuple[bytes, StreamDigests, LayerReport]:
    out = io.BytesIO()
    digests, report = write_layer(source, out, prefix=prefix, whiteouts=whiteouts, gzip=gzip, hashes=hashes)
    return out.getvalue(), digests, report


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        return archive.getmembers()


def names(data: bytes) -> list[str]:
    return [m.name for m in members(data)]


def test_same_directory_gives_same_bytes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    first, d1, _ = pack(tree, gzip=True, hashes=("sha256", "sha512"))
    second, d2, _ = pack(tree, gzip=True, hashes=("sha256", "sha512"))
    assert first == second
    assert d1 == d2


def test_entries_sorted_depth_first_without_root_entry(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    (tree / "etc/a.d").mkdir()
    (tree / "etc/a.d/z").write_text("z")
    (tree / "etc/B").write_text("upper case sorts first")
    data, _, _ = pack(tree)
    assert names(data) == [
        "bin",
        "bin/sh",
        "bin/tool",
        "bin/tool-again",
        "etc",
        "etc/B",
        "etc/a.d",
        "etc/a.d/z",
        "etc/hostname",
        "fifo",
        "null",
    ]


def test_prefix_puts_the_root_first_and_everything_under_it(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    os.chmod(tree, 0o751)
    data, _, _ = pack(tree, prefix="rootfs")
    entries = members(data)
    assert entries[0].name == "rootfs" and entries[0].isdir() and entries[0].mode == 0o751
    assert all(m.name.startswith("rootfs/") for m in entries[1:])
    link = next(m for m in entries if m.name == "rootfs/bin/tool-again")
    assert link.islnk() and link.linkname == "rootfs/bin/tool"


def test_metadata_is_kept(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    os.setxattr(tree / "etc", "trusted.overlay.origin", b"x")
    entries = {m.name: m for m in members(pack(tree)[0])}
    hostname = entries["etc/hostname"]
    assert (hostname.uid, hostname.gid, hostname.uname, hostname.gname) == (1234, 5678, "", "")
    assert hostname.mtime == 1_600_000_000
    assert (
        hostname.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape")
        == b"\xff\x00binary"
    )
    assert entries["bin/tool"].mode == 0o4755
    assert not any("trusted.overlay" in key for m in entries.values() for key in m.pax_headers)


def test_links_devices_and_sockets(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not packed")
    (tree / "escape").symlink_to(outside)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
        data, _, report = pack(tree)
    entries = {m.name: m for m in members(data)}
    assert entries["bin/sh"].issym() and entries["bin/sh"].linkname == "tool"
    assert entries["escape"].issym() and entries["escape"].linkname == str(outside)
    assert not any("secret" in name for name in entries)
    assert entries["bin/tool-again"].islnk() and entries["bin/tool-again"].linkname == "bin/tool"
    assert entries["fifo"].isfifo()
    assert entries["null"].ischr() and (entries["null"].devmajor, entries["null"].devminor) == (1, 3)
    assert "sock" not in entries
    assert report.sockets == ["/sock"]


def overlay_upper(root: Path) -> Path:
    """An upper dir deleting /etc/gone and making /var/cache opaque."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/kept").write_text("kept")
    whiteout(root / "etc/gone")
    (root / "var/cache").mkdir(parents=True)
    opaque(root / "var/cache")
    (root / "var/cache/new").write_text("new")
    return root


def test_oci_converts_whiteouts(tmp_path: Path) -> None:
    data, _, report = pack(overlay_upper(tmp_path / "upper"), whiteouts=Whiteouts.OCI)
    listed = names(data)
    assert listed == [
        "etc",
        "etc/.wh.gone",
        "etc/kept",
        "var",
        "var/cache",
        "var/cache/" + OPAQUE_MARKER,
        "var/cache/new",
    ]
    entries = {m.name: m for m in members(data)}
    assert entries["etc/.wh.gone"].isreg() and entries["etc/.wh.gone"].size == 0
    assert report.deleted == ["/etc/gone"]
    assert report.opaque == ["/var/cache"]


def test_shared_whiteout_inodes_are_whiteouts_not_hard_links(tmp_path: Path) -> None:
    # Recent kernels link whiteouts to one shared inode to save inodes.
    upper = tmp_path / "upper"
    upper.mkdir()
    whiteout(upper / "a")
    os.link(upper / "a", upper / "b")
    data, _, report = pack(upper)
    assert [(m.name, m.isreg()) for m in members(data)] == [(".wh.a", True), (".wh.b", True)]
    assert report.deleted == ["/a", "/b"]


def test_drop_leaves_whiteouts_out_and_reports_them(tmp_path: Path) -> None:
    data, _, report = pack(overlay_upper(tmp_path / "upper"), whiteouts=Whiteouts.DROP)
    assert names(data) == ["etc", "etc/kept", "var", "var/cache", "var/cache/new"]
    assert report.deleted == ["/etc/gone"]
    assert report.opaque == ["/var/cache"]


def test_a_real_wh_file_cannot_go_into_an_oci_layer(tmp_path: Path) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer/.wh.x").write_text("")
    with pytest.raises(BuildError, match=r"/\.wh\.x"):
        pack(tmp_path / "layer", whiteouts=Whiteouts.OCI)
    assert names(pack(tmp_path / "layer", whiteouts=Whiteouts.DROP)[0]) == [".wh.x"]


def test_several_sources_merge_as_overlay_would(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "dgr/bin").mkdir(parents=True)
    (lower / "dgr/bin/prestart").write_text("lower")
    (lower / "dgr/bin/gone").write_text("lower")
    (lower / "hidden").mkdir()
    (lower / "hidden/file").write_text("lower")
    (lower / "same").write_text("lower")
    (upper / "dgr/bin").mkdir(parents=True)
    (upper / "dgr/bin/app").write_text("upper")
    whiteout(upper / "dgr/bin/gone")
    (upper / "hidden").mkdir()
    opaque(upper / "hidden")
    (upper / "same").write_text("upper!")
    data, _, report = pack([lower, upper], whiteouts=Whiteouts.DROP)
    assert names(data) == ["dgr", "dgr/bin", "dgr/bin/app", "dgr/bin/prestart", "hidden", "same"]
    assert next(m for m in members(data) if m.name == "same").size == len("upper!")
    assert report.deleted == ["/dgr/bin/gone"]


def test_gzip_stream_and_digests(tmp_path: Path) -> None:
    tree = tmp_path / "layer"
    tree.mkdir()
    (tree / "big").write_bytes(os.urandom(3 * CHUNK + 123) + b"a" * CHUNK)
    data, digests, _ = pack(tree, gzip=True, hashes=("sha256", "sha512"))
    raw = gzip.decompress(data)
    assert digests.sha256 == hashlib.sha256(raw).hexdigest()
    assert digests.sha512 == hashlib.sha512(raw).hexdigest()
    assert digests.size == len(raw)
    assert digests.compressed_sha256 == hashlib.sha256(data).hexdigest()
    assert digests.compressed_size == len(data)
    assert raw == pack(tree)[0]


def test_parallel_compression_does_not_depend_on_threads() -> None:
    payload = os.urandom(CHUNK) + b"repetitive " * 400_000

    def compress(threads: int) -> bytes:
        out = io.BytesIO()
        sink = TarSink(out, gzip=True, threads=threads)
        for start in range(0, len(payload), 70_000):
            sink.write(payload[start : start + 70_000])
        sink.close()
        return out.getvalue()

    one = compress(1)
    assert one == compress(4)
    assert gzip.decompress(one) == payload


def test_roundtrip_keeps_metadata(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(pack(tree, gzip=True)[0]), dest)
    st = os.lstat(dest / "etc/hostname")
    assert (st.st_uid, st.st_gid, int(st.st_mtime)) == (1234, 5678, 1_600_000_000)
    assert os.getxattr(dest / "etc/hostname", "user.note") == b"\xff\x00binary"
    assert stat.S_IMODE(os.lstat(dest / "bin/tool").st_mode) == 0o4755
    assert os.lstat(dest / "bin/tool").st_ino == os.lstat(dest / "bin/tool-again").st_ino
    assert os.readlink(dest / "bin/sh") == "tool"
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert not os.path.lexists(dest / "null")  # images hold no device nodes: the runtime makes /dev
    (tree / "null").unlink()
    assert pack(dest)[0] == pack(tree)[0]


def test_extract_applies_whiteouts_onto_lower_content(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "etc").mkdir(parents=True)
    (dest / "etc/gone").write_text("lower")
    (dest / "var/cache/old").mkdir(parents=True)
    (dest / "var/cache/old/f").write_text("lower")
    (dest / "var/cache/new").write_text("lower version")
    extract_layer(io.BytesIO(pack(overlay_upper(tmp_path / "upper"))[0]), dest)
    assert not (dest / "etc/gone").exists()
    assert (dest / "etc/kept").read_text() == "kept"
    assert sorted(os.listdir(dest / "var/cache")) == ["new"]
    assert (dest / "var/cache/new").read_text() == "new"


def test_opaque_marker_after_siblings_keeps_this_layers_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "d/lower").write_text("lower")
    tar = build_tar([file_entry("d/mine", b"mine"), file_entry("d/" + OPAQUE_MARKER, b"")])
    extract_layer(tar, dest)
    assert os.listdir(dest / "d") == ["mine"]


def file_entry(name: str, data: bytes = b"x", **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def link_entry(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def build_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    out.seek(0)
    return out


@pytest.mark.parametrize(
    ("entries", "refused", "why"),
    [
        ([file_entry("../evil")], "../evil", "'..'"),
        ([file_entry("a/../../evil")], "a/../../evil", "'..'"),
        ([file_entry("/abs/evil")], "/abs/evil", "absolute"),
        (
            [link_entry("link", "OUTSIDE", tarfile.SYMTYPE), file_entry("link/evil")],
            "link/evil",
            "outside the destination",
        ),
        (
            [link_entry("up", "../..", tarfile.SYMTYPE), file_entry("up/evil")],
            "up/evil",
            "outside the destination",
        ),
        (
            [
                link_entry("sub", ".", tarfile.SYMTYPE),
                link_entry("hard", "../outside/target", tarfile.LNKTYPE),
            ],
            "hard",
            "'..'",
        ),
        ([link_entry("hard", "OUTSIDE/target", tarfile.LNKTYPE)], "hard", "absolute"),
        (
            [
                link_entry("link", "OUTSIDE", tarfile.SYMTYPE),
                link_entry("hard", "link/target", tarfile.LNKTYPE),
            ],
            "hard",
            "outside the destination",
        ),
        ([file_entry(".wh...")], ".wh...", "malformed whiteout"),
    ],
)
def test_extract_refuses_entries_leaving_the_destination(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], refused: str, why: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("outside")
    for info, _ in entries:
        info.name = info.name.replace("OUTSIDE", str(outside))
        info.linkname = info.linkname.replace("OUTSIDE", str(outside))
    dest = tmp_path / "work" / "dest"
    with pytest.raises(BuildError) as err:
        extract_layer(build_tar(entries), dest)
    assert repr(refused.replace("OUTSIDE", str(outside))) in err.value.message
    assert why in err.value.message
    assert sorted(os.listdir(outside)) == ["target"]
    assert (outside / "target").read_text() == "outside"
    assert os.listdir(tmp_path / "work") == ["dest"]
    assert os.stat(outside / "target").st_nlink == 1


def test_extract_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    tar = build_tar(
        [
            file_entry("usr/lib/a", b"a"),
            link_entry("lib", "usr/lib", tarfile.SYMTYPE),
            file_entry("lib/b", b"b"),
        ]
    )
    extract_layer(tar, tmp_path / "dest")
    assert (tmp_path / "dest/usr/lib/b").read_bytes() == b"b"
    assert (tmp_path / "dest/lib").is_symlink()


def test_extract_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("outside")
    tar = build_tar([link_entry("file", str(outside), tarfile.SYMTYPE), file_entry("file", b"inside")])
    extract_layer(tar, tmp_path / "dest")
    assert outside.read_text() == "outside"
    assert (tmp_path / "dest/file").read_bytes() == b"inside"


def test_extract_aci_rootfs_strips_the_prefix(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "layer")
    aci = tmp_path / "image.aci"
    with aci.open("wb") as handle:
        sink = TarSink(handle)
        writer = TarWriter(sink)
        writer.add_bytes("manifest", b"{}")
        writer.add_tree(tree, prefix="rootfs", whiteouts=Whiteouts.DROP)
        writer.close()
        sink.close()
    extract_aci_rootfs(aci, tmp_path / "rootfs")
    assert sorted(os.listdir(tmp_path / "rootfs")) == ["bin", "etc", "fifo"]
    assert (
        os.lstat(tmp_path / "rootfs/bin/tool").st_ino == os.lstat(tmp_path / "rootfs/bin/tool-again").st_ino
    )


def test_atomic_file_keeps_the_previous_file_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "image.aci"
    dest.write_text("previous")
    with pytest.raises(RuntimeError), atomic_file(dest) as out:
        out.write(b"half")
        raise RuntimeError("killed")
    assert dest.read_text() == "previous"
    assert os.listdir(tmp_path) == ["image.aci"]
    with atomic_file(dest) as out:
        out.write(b"new")
    assert dest.read_bytes() == b"new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_long_packaging_logs_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from dgr import tarsink

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    monkeypatch.setattr(tarsink, "PROGRESS_STEP", 2 * tarsink.CHUNK)
    collect = Collect()
    tarsink.log.addHandler(collect)
    monkeypatch.setattr(tarsink.log, "level", logging.INFO)
    try:
        sink = tarsink.TarSink(io.BytesIO(), label="image.aci")
        sink.write(b"\0" * (5 * tarsink.CHUNK))
        sink.close()
    finally:
        tarsink.log.removeHandler(collect)
    assert collect.lines == ["image.aci: 2 MiB packed", "image.aci: 4 MiB packed"]
