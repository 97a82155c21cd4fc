"""Extracting layer tars safely: nothing a tar holds may land outside its destination.

Entries that are absolute, contain `..`, would be written through a symlink that leads
outside the destination, or hard-link to something outside it are refused with a BuildError
naming them. OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are, per :class:`WhiteoutMode`,
applied (one tree holding every layer), turned into overlay whiteouts (each layer its own
overlay lower directory) or left as files (appc has none). Used for dependencies fetched into
the store, for `dgr cp`, and by the tests as an independent reader.

Layers hold no device nodes (the runtime provides /dev): they are dropped, or refused when
asked (OCI layers, see dgr/ociref.py). From an image that is not trusted (unsigned, not opted
in), setuid/setgid bits and file capabilities are dropped too. Each kind of drop is logged
once per layer.
"""

from __future__ import annotations

import enum
import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from dgr.errors import BuildError, DgrError
from dgr.layer import OPAQUE_MARKER, OPAQUE_XATTR, OVERLAY_XATTRS, WHITEOUT_PREFIX
from dgr.leftovers import make_dir
from dgr.limits import DEFAULT as DEFAULT_LIMITS
from dgr.limits import Budget, Limits
from dgr.log import log
from dgr.process import run
from dgr.tarsink import CHUNK
from dgr.userns import IDENTITY, IdMap

CAPABILITY_XATTR = "security.capability"


class WhiteoutMode(enum.Enum):
    """What an OCI whiteout entry of a layer does on extraction."""

    APPLY = "apply"  # delete NAME (or the lower contents of an opaque directory) from dest
    OVERLAY = "overlay"  # an overlay whiteout: NAME as a 0/0 character device, opaque xattr
    NONE = "none"  # no whiteouts (appc): `.wh.` names are ordinary files


class _Extractor:
    """Applies one layer tar onto `dest`, refusing anything that would land outside it."""

    def __init__(
        self,
        dest: Path,
        source: str,
        strip: str,
        whiteouts: WhiteoutMode,
        ids: IdMap,
        trusted: bool,
        budget: Budget,
        refuse_devices: bool = False,
    ) -> None:
        self.budget = budget
        self.dest = os.path.realpath(dest)
        self.source = source
        self.strip = strip.strip("/")
        self.whiteouts = whiteouts
        self.ids = ids
        self.trusted = trusted
        self.refuse_devices = refuse_devices
        self.dropped: dict[str, list[str]] = {}
        self.written: set[str] = set()
        self.opaque: list[str] = []
        self.directories: list[tuple[str, tarfile.TarInfo]] = []

    def refuse(self, name: str, why: str) -> BuildError:
        return BuildError(f"refusing tar entry {name!r}: {why}", path=self.source)

    def inside(self, path: str) -> bool:
        return path == self.dest or path.startswith(self.dest + "/")

    def parent(self, name: str, parts: list[str], *, create: bool = True) -> str:
        """The real directory that will hold `parts[-1]`, checked inside dest.

        Missing directories are created (with `create`) or refused. A symlink among the
        parents is followed only when it resolves inside `dest`.
        """
        current = self.dest
        for index, part in enumerate(parts[:-1]):
            candidate = os.path.join(current, part)
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                if not create:
                    raise self.refuse(name, f"{'/'.join(parts[: index + 1])} does not exist") from None
                os.mkdir(candidate, 0o755)
                self.ids.give(candidate)  # a parent the tar does not list: root's, as tar makes it
                current = candidate
                continue
            if stat.S_ISLNK(st.st_mode):
                resolved = os.path.realpath(candidate)
                shown = "/".join(parts[: index + 1])
                if not self.inside(resolved):
                    raise self.refuse(
                        name, f"{shown} is a symlink to {os.readlink(candidate)!r}, outside the destination"
                    )
                if not os.path.isdir(resolved):
                    raise self.refuse(name, f"{shown} is a symlink to a non-directory")
                current = resolved
            elif stat.S_ISDIR(st.st_mode):
                current = candidate
            else:
                raise self.refuse(name, f"{'/'.join(parts[: index + 1])} is not a directory")
        return current

    def parts(self, name: str, link_of: str | None = None) -> list[str] | None:
        """The clean path components of archive name `name` below the stripped prefix.

        None when `name` is not under that prefix; a BuildError when absolute or with `..`
        (naming the entry `link_of` when `name` is its hard-link target).
        """
        entry, what = (name, "it") if link_of is None else (link_of, f"its link target {name!r}")
        if name.startswith("/"):
            raise self.refuse(entry, f"{what} is an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.refuse(entry, f"{what} contains '..'")
        if self.strip:
            if not parts or parts[0] != self.strip:
                return None
            del parts[0]
        return parts

    def entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = self.parts(member.name)
        if parts is None:
            return
        self.budget.take(member.name, member.size if member.isreg() else 0)
        if not parts:
            if member.isdir():
                self.directories.append((self.dest, member))
            return
        folder = self.parent(member.name, parts)
        last = parts[-1]
        if self.whiteouts is not WhiteoutMode.NONE and last == OPAQUE_MARKER:
            self.opaque.append(folder)
            return
        if self.whiteouts is not WhiteoutMode.NONE and last.startswith(WHITEOUT_PREFIX):
            deleted = last[len(WHITEOUT_PREFIX) :]
            if deleted in ("", ".", "..") or deleted.startswith(WHITEOUT_PREFIX):
                raise self.refuse(member.name, "it is a malformed whiteout")
            target = os.path.join(folder, deleted)
            _remove(target)
            if self.whiteouts is WhiteoutMode.OVERLAY:
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                self.ids.give(target)
                self.written.add(target)
            return
        target = os.path.join(folder, last)
        self.create(archive, member, target)
        self.written.add(target)

    def create(self, archive: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
        if member.isdir():
            if not (os.path.isdir(target) and not os.path.islink(target)):
                _remove(target)
                os.mkdir(target, 0o700)
            self.directories.append((target, member))
            return
        _remove(target)
        if member.isreg():
            self.write_file(archive, member, target)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            self.hardlink(member, target)
            return  # a hard link shares the metadata of its target
        elif member.ischr() or member.isblk():
            if self.refuse_devices:
                raise self.refuse(member.name, "it is a device node (images get /dev from the runtime)")
            self.drop("device nodes", member.name)
            return
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        else:
            raise self.refuse(member.name, f"unsupported entry type {member.type!r}")
        self.apply_metadata(target, member)

    def drop(self, what: str, name: str) -> None:
        self.dropped.setdefault(what, []).append(name)

    def apply_metadata(self, target: str, member: tarfile.TarInfo) -> None:
        os.chown(target, self.ids.host_uid(member.uid), self.ids.host_gid(member.gid), follow_symlinks=False)
        for key, value in sorted(member.pax_headers.items()):
            if not key.startswith("SCHILY.xattr.") or key[13:].startswith(OVERLAY_XATTRS):
                continue
            if key[13:] == CAPABILITY_XATTR and not self.trusted:
                self.drop("file capabilities", member.name)
                continue
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(target, key[13:], raw, follow_symlinks=False)
            except OSError as exc:  # a malformed value (EINVAL), a name the file system refuses
                raise self.refuse(
                    member.name, f"its xattr {key[13:]} cannot be set: {exc.strerror}"
                ) from None
        if not member.issym():
            mode = member.mode
            if mode & (stat.S_ISUID | stat.S_ISGID) and not self.trusted and not member.isdir():
                self.drop("setuid/setgid bits", member.name)
                mode &= ~(stat.S_ISUID | stat.S_ISGID)
            os.chmod(target, mode)  # after chown, which clears set-id bits
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)

    def report(self) -> None:
        for what, names in self.dropped.items():
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            log.warning(
                "%s: dropped %s of %d entr%s: %s",
                self.source,
                what,
                len(names),
                "y" if len(names) == 1 else "ies",
                shown,
            )

    def write_file(self, archive: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
        data = archive.extractfile(member)
        assert data is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(data, out, CHUNK)

    def hardlink(self, member: tarfile.TarInfo, target: str) -> None:
        parts = self.parts(member.linkname, link_of=member.name)
        if parts is None:
            raise self.refuse(member.name, f"its link target {member.linkname!r} is outside {self.strip}/")
        if not parts:
            raise self.refuse(member.name, "it links to the root directory")
        source = os.path.join(self.parent(member.name, parts, create=False), parts[-1])
        if not os.path.lexists(source) or os.path.isdir(source) and not os.path.islink(source):
            raise self.refuse(member.name, f"link target {member.linkname!r} is missing or a directory")
        os.link(source, target, follow_symlinks=False)

    def finish(self) -> None:
        """Hide lower contents of opaque directories, then set directory metadata, deepest first."""
        keep: set[str] = set()
        for path in self.written:
            while path != self.dest and path not in keep:
                keep.add(path)
                path = os.path.dirname(path)
        for folder in self.opaque:
            if self.whiteouts is WhiteoutMode.OVERLAY:
                os.setxattr(folder, OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                self.clear_lower(folder, keep)
        for target, member in sorted(self.directories, key=lambda item: item[0], reverse=True):
            self.apply_metadata(target, member)
        self.report()

    def clear_lower(self, folder: str, keep: set[str]) -> None:
        """Remove what is under `folder` except `keep`: what this layer wrote and their parents."""
        for child in os.listdir(folder):
            path = os.path.join(folder, child)
            if path not in keep:
                _remove(path)
            elif path not in self.written and os.path.isdir(path) and not os.path.islink(path):
                self.clear_lower(path, keep)


def _remove(path: str) -> None:
    """Remove `path` whatever it is (a directory with its contents); never follows symlinks."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract_layer(
    tar: Path | IO[bytes],
    dest: Path,
    *,
    strip: str = "",
    whiteouts: WhiteoutMode = WhiteoutMode.APPLY,
    ids: IdMap = IDENTITY,
    trusted: bool = True,
    refuse_devices: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Apply the layer `tar` (a path or a stream; raw, gzip, bzip2 or xz) onto directory `dest`.

    OCI whiteouts are applied (`.wh.NAME` deletes NAME, `.wh..wh..opq` hides what lower
    layers put in the directory), made overlay whiteouts (a 0/0 character device NAME, the
    `trusted.overlay.opaque` xattr: `dest` is then one overlay lower directory of its own) or
    ignored, per `whiteouts`. With `strip`, only entries under that
    top-level directory are extracted, re-rooted at `dest`. Entries are refused with a
    BuildError naming them when they are absolute, contain `..`, would be written through a
    symlink that leads outside `dest`, or hard-link to something outside it. Ownership
    (shifted to the host ids of `ids`), modes, mtimes and xattrs (except `trusted.overlay.*`)
    are restored; device nodes are dropped (refused with `refuse_devices`), and so are
    setuid/setgid bits and file capabilities unless the layer is `trusted`. An archive
    expanding beyond `limits` (see dgr/limits.py) is refused before the entry that goes
    beyond is written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    name = os.fspath(tar) if isinstance(tar, Path) else getattr(tar, "name", "<stream>")
    size = os.path.getsize(tar) if isinstance(tar, Path) else None
    budget = limits.budget(size, str(name))
    extractor = _Extractor(dest, str(name), strip, whiteouts, ids, trusted, budget, refuse_devices)
    try:
        if isinstance(tar, Path):
            archive = tarfile.open(tar, mode="r|*")
        else:
            archive = tarfile.open(fileobj=tar, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"cannot read layer: {exc}", path=str(name)) from None
    with archive:
        try:
            for member in archive:
                extractor.entry(archive, member)
        except tarfile.TarError as exc:
            raise BuildError(f"corrupt layer: {exc}", path=str(name)) from None
    extractor.finish()


def extract_aci_rootfs(
    aci: Path, dest: Path, *, ids: IdMap = IDENTITY, trusted: bool = True, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Extract the `rootfs/` of the ACI `aci` into `dest` (no whiteouts: appc has none)."""
    extract_layer(
        aci, dest, strip="rootfs", whiteouts=WhiteoutMode.NONE, ids=ids, trusted=trusted, limits=limits
    )


def copy_from_aci(aci: Path, path: str, host_dir: Path) -> Path:
    """Copy `path` of the ACI's rootfs (this image's layer only) into `host_dir`.

    The ACI is extracted safely into a scratch folder next to it first; a missing path is a
    DgrError. Returns the copied file or folder.
    """
    rel = PurePosixPath(path.lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise DgrError(f"cp: {path!r} is not a path inside the image")
    scratch = make_dir(aci.parent, ".cp-")
    try:
        extract_aci_rootfs(aci, scratch)
        source = scratch.joinpath(*rel.parts)
        if not source.exists() and not source.is_symlink():
            raise DgrError(f"cp: {path} is not in {aci} (only this image's own layer can be copied)")
        host_dir.mkdir(parents=True, exist_ok=True)
        # cp -a, as the original: modes, owners, times, links and device nodes kept.
        run(["cp", "-a", "--", str(source), str(host_dir)], what=f"copying {path}")
        return host_dir / rel.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
