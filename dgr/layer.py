"""Layer tar streams: pack a layer directory into a deterministic tar.

A build leaves, for one image, the overlayfs upper directory of its rootfs: what this build
added or changed, with overlay whiteouts for what it deleted (character devices 0/0 for
deleted files, the `trusted.overlay.opaque=y` xattr on directories whose lower contents are
hidden). This module turns such a directory into a tar stream:

* entries depth-first, each directory's children sorted by their byte names, so the same
  directory always gives the same bytes (and therefore the same image ID / digests);
* numeric uid/gid, mode, integer mtime, xattrs (as PAX `SCHILY.xattr.*`, minus
  `trusted.overlay.*`), hard links as link entries, symlinks as symlinks (never followed),
  devices and fifos as themselves; sockets are skipped;
* whiteouts per :class:`Whiteouts`: converted to OCI `.wh.NAME` / `.wh..wh..opq` markers, or
  dropped for appc, which has no way to express a deletion (see :class:`Whiteouts`).

The stream goes through a :class:`~dgr.tarsink.TarSink`, which hashes it and writes it raw or
gzip-compressed (zlib level 1 in parallel blocks, pigz style) in the same pass.

:func:`dgr.extract.extract_layer` is the reverse, for dependency layers: it refuses any entry
that would write outside the destination and applies OCI whiteouts.
"""

from __future__ import annotations

import enum
import os
import stat
import tarfile
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from dgr.errors import BuildError
from dgr.leftovers import owned
from dgr.tarsink import CHUNK, StreamDigests, TarSink
from dgr.userns import IDENTITY, IdMap

BLOCK = 512
OVERLAY_XATTRS = "trusted.overlay."
OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay features whose upper-dir files do not hold the real content: refuse to package them.
UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class Whiteouts(enum.Enum):
    """What to do with overlay whiteouts found in a layer directory.

    OCI: a deleted `D/NAME` becomes an empty file `D/.wh.NAME`; an opaque directory `D` is
    followed by an empty `D/.wh..wh..opq`. A real file whose name starts with `.wh.` cannot be
    expressed and is a BuildError.

    DROP (appc): appc images have no whiteouts. Deleted paths are left out of the tar, so a
    file deleted from a dependency **stays visible** in the appc image (the dependency's copy
    shows through when rkt-style renderers stack the images); an opaque directory is written
    as a plain directory. The paths are reported in :class:`LayerReport` so the build can warn.
    """

    OCI = "oci"
    DROP = "drop"


@dataclass
class LayerReport:
    """Paths (absolute, as seen in the container) that need a word in the build log."""

    deleted: list[str] = field(default_factory=list)  # overlay whiteouts: files this layer deletes
    opaque: list[str] = field(default_factory=list)  # directories hiding their lower contents
    sockets: list[str] = field(default_factory=list)  # skipped: a tar cannot hold them


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _xattrs(path: str, where: str) -> dict[str, str]:
    """PAX records for the xattrs of `path` (not followed), minus overlayfs' own."""
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
    except OSError as exc:
        if exc.errno in (95, 61):  # EOPNOTSUPP, ENODATA: no xattrs here
            return {}
        raise
    records = {}
    for name in names:
        if name.startswith(UNSUPPORTED_XATTRS):
            raise BuildError(
                f"cannot package {where}: it carries {name} (overlay redirect_dir/metacopy)",
                path=path,
                hint="mount the build overlay without redirect_dir and metacopy",
            )
        if name.startswith(OVERLAY_XATTRS):
            continue
        value = os.getxattr(path, name, follow_symlinks=False)
        records["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return records


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _merged_children(directories: Sequence[str]) -> list[tuple[str, list[os.DirEntry[str]]]]:
    """The children of `directories` (stacked, lowest first), sorted by byte name.

    Each name comes with its entries, highest first.
    """
    found: dict[str, list[os.DirEntry[str]]] = {}
    for directory in directories:
        with os.scandir(directory) as entries:
            for entry in entries:
                found.setdefault(entry.name, []).insert(0, entry)
    return sorted(found.items(), key=lambda item: os.fsencode(item[0]))


def _stack_directories(
    paths: Sequence[str], entries: Sequence[os.DirEntry[str]] | None = None
) -> tuple[list[str], bool]:
    """The directories merged at one path, lowest first, and whether the result is opaque.

    `paths` are the candidates, highest first (the first is a directory). Merging stops at a
    lower non-directory (which the directory hides) or after an opaque directory.
    """
    merged: list[str] = []
    for index, path in enumerate(paths):
        if index and not (entries[index].is_dir(follow_symlinks=False) if entries else os.path.isdir(path)):
            break
        merged.append(path)
        if _is_opaque(path):
            return merged[::-1], True
    return merged[::-1], False


class TarWriter:
    """Writes tar entries (PAX format) into a :class:`TarSink`.

    The writer never follows a symlink of the tree it reads, records hard links against the
    first archive name of the inode, and is deterministic: the same calls on the same files
    give the same bytes.
    """

    def __init__(self, sink: TarSink, ids: IdMap = IDENTITY) -> None:
        """`ids` maps the tree's host owners back to the ids its sandboxes saw."""
        self._sink = sink
        self._ids = ids
        self._links: dict[tuple[int, int], str] = {}
        self._whiteouts = Whiteouts.OCI
        self._report = LayerReport()

    def _header(self, info: tarfile.TarInfo) -> None:
        self._sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_bytes(self, name: str, data: bytes, *, mode: int = 0o644, mtime: int = 0) -> None:
        """A regular file `name` holding `data`, owned by 0:0."""
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = mtime
        self._header(info)
        self._sink.write(data)
        self._sink.write(_pad(len(data)))

    def add_member(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        """Copy an entry read from another tar; `data` holds the content of a regular file."""
        if not info.isreg():
            info.size = 0
        self._header(info)
        if not info.size:
            return
        if data is None:
            raise BuildError(f"no data for tar entry {info.name!r}")
        left = info.size
        while left:
            chunk = data.read(min(left, CHUNK))
            if not chunk:
                raise BuildError(f"tar entry {info.name!r} is truncated")
            self._sink.write(chunk)
            left -= len(chunk)
        self._sink.write(_pad(info.size))

    def add_tree(
        self,
        sources: Path | Sequence[Path],
        *,
        prefix: str = "",
        whiteouts: Whiteouts = Whiteouts.OCI,
    ) -> LayerReport:
        """Every file under `sources` as `prefix/relative/path`.

        Several sources (lowest first) are merged as overlayfs would stack them: for a path in
        more than one, the highest wins; directories merge unless a higher one is opaque;
        a whiteout in a higher source hides the path of the lower ones. With a `prefix` the
        root itself is written first, as `prefix` (appc's `rootfs` entry); without one the
        root gets no entry of its own (OCI layers).
        """
        roots = [os.fspath(sources)] if isinstance(sources, Path) else [os.fspath(s) for s in sources]
        if not roots:
            raise BuildError("no layer directory to package")
        self._whiteouts = whiteouts
        self._report = report = LayerReport()
        for root in roots:
            if not stat.S_ISDIR(os.lstat(root).st_mode):
                raise BuildError("layer is not a directory", path=root)
        st = os.lstat(roots[-1])
        stacked, opaque = _stack_directories(roots[::-1])
        prefix = prefix.strip("/")
        if prefix:
            self._add_directory(roots[-1], prefix, st, "/", opaque)
        elif opaque:
            self._add_opaque("", "/", st)
        self._walk(stacked, prefix + "/" if prefix else "")
        return report

    def _walk(self, roots: list[str], arcroot: str) -> None:
        # Iterative depth-first walk: deep trees do not hit the recursion limit. `cdir` is the
        # path as seen in the container, for reports.
        stack: list[tuple[str, str, Iterator[tuple[str, list[os.DirEntry[str]]]]]] = [
            (arcroot, "/", iter(_merged_children(roots)))
        ]
        while stack:
            arcdir, cdir, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            name, entries = child
            top = entries[0]
            arcname = arcdir + name
            cpath = cdir + name
            st = top.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stacked, opaque = _stack_directories([e.path for e in entries], entries)
                self._add_directory(top.path, arcname, st, cpath, opaque)
                stack.append((arcname + "/", cpath + "/", iter(_merged_children(stacked))))
            else:
                self._add_other(top.path, arcname, st, cpath)

    def _info(self, arcname: str, st: os.stat_result, kind: bytes, path: str | None) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = self._ids.container_uid(st.st_uid)
        info.gid = self._ids.container_gid(st.st_gid)
        info.mtime = int(st.st_mtime)
        if path is not None:
            info.pax_headers = _xattrs(path, arcname)
        return info

    def _add_directory(self, path: str, arcname: str, st: os.stat_result, cpath: str, opaque: bool) -> None:
        self._header(self._info(arcname, st, tarfile.DIRTYPE, path))
        if opaque:
            self._add_opaque(arcname + "/", cpath, st)

    def _add_opaque(self, arcdir: str, cpath: str, st: os.stat_result) -> None:
        self._report.opaque.append(cpath)
        if self._whiteouts is Whiteouts.OCI:
            self._add_marker(arcdir + OPAQUE_MARKER, st)

    def _add_marker(self, arcname: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(arcname)
        info.mode = 0o644
        info.mtime = int(st.st_mtime)
        self._header(info)

    def _add_other(self, path: str, arcname: str, st: os.stat_result, cpath: str) -> None:
        name = arcname.rsplit("/", 1)[-1]
        oci = self._whiteouts is Whiteouts.OCI
        if _is_whiteout(st):
            self._report.deleted.append(cpath)
            if oci:
                self._add_marker(arcname[: len(arcname) - len(name)] + WHITEOUT_PREFIX + name, st)
            return
        if oci and name.startswith(WHITEOUT_PREFIX):
            raise BuildError(
                f"cannot put {cpath} in an OCI layer: a {WHITEOUT_PREFIX!r} name means a deletion",
                path=path,
            )
        if stat.S_ISSOCK(st.st_mode):
            self._report.sockets.append(cpath)
            return
        if st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), arcname)
            if first != arcname:
                info = self._info(arcname, st, tarfile.LNKTYPE, None)
                info.linkname = first
                self._header(info)
                return
        if stat.S_ISREG(st.st_mode):
            self._add_regular(path, arcname, st)
        elif stat.S_ISLNK(st.st_mode):
            info = self._info(arcname, st, tarfile.SYMTYPE, path)
            info.linkname = os.readlink(path)
            self._header(info)
        else:
            self._add_special(path, arcname, st)

    def _add_special(self, path: str, arcname: str, st: os.stat_result) -> None:
        if stat.S_ISCHR(st.st_mode):
            kind = tarfile.CHRTYPE
        elif stat.S_ISBLK(st.st_mode):
            kind = tarfile.BLKTYPE
        elif stat.S_ISFIFO(st.st_mode):
            kind = tarfile.FIFOTYPE
        else:
            raise BuildError(f"cannot package {arcname}: unknown file type {st.st_mode:o}", path=path)
        info = self._info(arcname, st, kind, path)
        if kind != tarfile.FIFOTYPE:
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        self._header(info)

    def _add_regular(self, path: str, arcname: str, st: os.stat_result) -> None:
        info = self._info(arcname, st, tarfile.REGTYPE, path)
        info.size = st.st_size
        self._header(info)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            left = st.st_size
            while left:
                data = os.read(fd, min(left, CHUNK))
                if not data:
                    raise BuildError(f"{arcname} shrank while it was being packaged", path=path)
                self._sink.write(data)
                left -= len(data)
        finally:
            os.close(fd)
        self._sink.write(_pad(st.st_size))

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks)."""
        self._sink.write(b"\0" * (2 * BLOCK))


def write_layer(
    source: Path | Sequence[Path],
    out: IO[bytes],
    *,
    prefix: str = "",
    whiteouts: Whiteouts = Whiteouts.OCI,
    gzip: bool = False,
    hashes: Collection[str] = ("sha256",),
    threads: int | None = None,
    ids: IdMap = IDENTITY,
) -> tuple[StreamDigests, LayerReport]:
    """Write the directory `source` to `out` as a complete tar (see the module docstring).

    Several directories (lowest first) are merged as overlayfs would stack them. `threads`
    compress in parallel (default: one per CPU); the bytes do not depend on it.
    """
    sink = TarSink(out, gzip=gzip, hashes=hashes, threads=threads)
    try:
        writer = TarWriter(sink, ids)
        report = writer.add_tree(source, prefix=prefix, whiteouts=whiteouts)
        writer.close()
        return sink.close(), report
    except BaseException:
        sink.abort()
        raise


@contextmanager
def atomic_file(dest: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A new file that becomes `dest` only when the block succeeds.

    It is written as a hidden temporary next to `dest` and renamed over it at the end; on any
    failure the temporary is removed and a previous `dest` is left untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=owned(f".{dest.name}."), suffix=".tmp", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as handle:
            yield handle
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
