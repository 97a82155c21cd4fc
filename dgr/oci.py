"""The OCI side of an image: layer blobs and the OCI image layout (its config: dgr/ociconfig.py).

The layout (`target/oci/`) holds the dependency layers (in dependency order) and this image's
layer last, so `skopeo copy oci:DIR:TAG ...` gives an image podman or docker can run.

Layers are passed as :class:`LayerBlob`: an already-compressed blob with its digests. A
:class:`BlobCache` makes them: from a layer directory (tar + gzip + digests in one pass), an
uncompressed layer tar, or an ACI, and stores each blob once by digest. A caller-chosen key
(a dependency's image ID, the dgr internals' version...) finds a blob again without reading
its source, so shared layers are not re-compressed on every build.

`write_oci_layout` builds the whole layout in a temporary directory next to its destination
and swaps it into place, reusing (hard-linking) blobs already in the cache or in the previous
layout.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from dgr.aci import MANIFEST as ACI_MANIFEST
from dgr.aci import ROOTFS as ACI_ROOTFS
from dgr.errors import BuildError, DgrError
from dgr.layer import TarWriter, Whiteouts, atomic_file
from dgr.leftovers import owned, remove_stale
from dgr.manifest import Manifest
from dgr.names import oci_tag
from dgr.ociconfig import image_config, oci_platform
from dgr.tarsink import StreamDigests, TarSink
from dgr.userns import IDENTITY, IdMap

MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# The distribution spec's grammar for a repository path component and for a tag.
REPOSITORY_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# dgr's trust policy for skopeo copying its own layouts (accept anything): the source is this
# host's own build.
SKOPEO_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


@dataclass(frozen=True)
class LayerBlob:
    """A compressed layer blob on disk: `digest` of the blob, `diff_id` of its uncompressed tar."""

    path: Path
    digest: str
    diff_id: str
    size: int
    media_type: str = MEDIA_LAYER_GZIP

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


# --- labels of an image built on an OCI base (its config: dgr/ociconfig.py) --------------------

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def base_labels(reference: str, digest: str) -> dict[str, str]:
    """The OCI annotations (as labels) naming the base image an image is built on."""
    return {BASE_NAME: reference, BASE_DIGEST: digest}


def config_labels(base: Mapping[str, Any]) -> dict[str, str]:
    """The labels of an OCI image config (`config.Labels`), as strings."""
    labels = (base.get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


# --- blobs ------------------------------------------------------------------------------------


def _blob_from_digests(path: Path, digests: StreamDigests) -> LayerBlob:
    assert digests.compressed_sha256 is not None and digests.compressed_size is not None
    return LayerBlob(
        path=path,
        digest=f"sha256:{digests.compressed_sha256}",
        diff_id=f"sha256:{digests.sha256}",
        size=digests.compressed_size,
    )


class BlobCache:
    """Compressed layer blobs under `root`, stored once by digest and found again by key.

    Layout: `root/blobs/sha256/<hex>` (read-only files) and `root/keys/<sha256 of key>.json`.
    Safe for concurrent builds: every file appears by an atomic rename, and two builds making
    the same blob write the same bytes.
    """

    def __init__(self, root: Path, ids: IdMap = IDENTITY) -> None:
        self.root = root
        self.ids = ids  # owners of the directories it packs, as the sandboxes saw them
        self.blobs = root / "blobs" / "sha256"
        self.keys = root / "keys"

    def _key_path(self, key: str) -> Path:
        return self.keys / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".json")

    def lookup(self, key: str) -> LayerBlob | None:
        """The blob remembered under `key`, if it is still there intact (same size)."""
        try:
            data = json.loads(self._key_path(key).read_text(encoding="utf-8"))
            blob = LayerBlob(
                path=self.blobs / data["digest"].removeprefix("sha256:"),
                digest=data["digest"],
                diff_id=data["diff_id"],
                size=data["size"],
                media_type=data["media_type"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            return blob if blob.path.stat().st_size == blob.size else None
        except OSError:
            return None

    def remember(self, key: str, blob: LayerBlob) -> None:
        """Find `blob` (which must be in this cache) again under `key`."""
        record = {k: v for k, v in asdict(blob).items() if k != "path"}
        with atomic_file(self._key_path(key)) as out:
            out.write(json.dumps(record, indent=2).encode("utf-8"))

    def _store(self, produce: Any) -> LayerBlob:
        """Run `produce(out) -> StreamDigests` into a temporary blob, then file it by digest."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        remove_stale(self.blobs, ".blob.")  # what a killed build was writing
        fd, name = tempfile.mkstemp(prefix=owned(".blob."), suffix=".tmp", dir=self.blobs)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                digests: StreamDigests = produce(out)
            os.chmod(tmp, 0o444)
            blob = _blob_from_digests(self.blobs / str(digests.compressed_sha256), digests)
            os.replace(tmp, blob.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return blob

    def layer_from_directory(self, source: Path | Sequence[Path], *, key: str | None = None) -> LayerBlob:
        """The gzip OCI layer of the directory `source` (overlay whiteouts converted).

        Several directories (lowest first) are merged into one layer, as overlayfs stacks them.

        With `key`, a blob remembered under it is returned without reading `source`, and a
        new blob is remembered under it.
        """

        def produce(out: IO[bytes]) -> StreamDigests:
            sink = TarSink(out, gzip=True, hashes=("sha256",), label="OCI layer")
            try:
                writer = TarWriter(sink, self.ids)
                writer.add_tree(source, whiteouts=Whiteouts.OCI)
                writer.close()
                return sink.close()
            except BaseException:
                sink.abort()
                raise

        return self._cached(key, produce)

    def layer_from_tar(self, tar: Path, *, key: str | None = None) -> LayerBlob:
        """The gzip blob of an uncompressed (or gzip) layer tar, bytes unchanged."""

        def produce(out: IO[bytes]) -> StreamDigests:
            sink = TarSink(out, gzip=True, hashes=("sha256",), label="OCI layer")
            try:
                with _open_maybe_gzip(tar) as handle:
                    while chunk := handle.read(1 << 20):
                        sink.write(chunk)
                return sink.close()
            except BaseException:
                sink.abort()
                raise

        return self._cached(key, produce)

    def layer_from_aci(self, aci: Path, *, key: str | None = None) -> LayerBlob:
        """The gzip OCI layer of an ACI's rootfs: its entries re-rooted at `/`, manifest left out."""

        def produce(out: IO[bytes]) -> StreamDigests:
            sink = TarSink(out, gzip=True, hashes=("sha256",), label="OCI layer")
            try:
                writer = TarWriter(sink)
                with tarfile.open(aci, mode="r|*") as archive:
                    for member in archive:
                        _reroot_member(archive, member, writer)
                writer.close()
                return sink.close()
            except tarfile.TarError as exc:
                sink.abort()
                raise DgrError(f"cannot read ACI: {exc}", path=aci) from None
            except BaseException:
                sink.abort()
                raise

        return self._cached(key, produce)

    def _cached(self, key: str | None, produce: Any) -> LayerBlob:
        if key is not None:
            found = self.lookup(key)
            if found is not None:
                return found
        blob = self._store(produce)
        if key is not None:
            self.remember(key, blob)
        return blob


def _open_maybe_gzip(path: Path) -> io.BufferedIOBase:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(path, "rb")
    return path.open("rb")


def _reroot_member(archive: tarfile.TarFile, member: tarfile.TarInfo, writer: TarWriter) -> None:
    """Copy an ACI entry `rootfs/X` as `X` (hard-link targets too); drop the rest."""
    name = member.name.removeprefix("./").strip("/")
    if name == ACI_MANIFEST or name == ACI_ROOTFS or not name.startswith(ACI_ROOTFS + "/"):
        return
    member.name = name[len(ACI_ROOTFS) + 1 :]
    if member.islnk():
        member.linkname = member.linkname.removeprefix("./").removeprefix(ACI_ROOTFS + "/")
    data = archive.extractfile(member) if member.isreg() else None
    writer.add_member(member, data)


# --- layout -----------------------------------------------------------------------------------


def _place_blob(blob: LayerBlob, blobs: Path, previous: Path) -> None:
    """Put `blob` in `blobs/`: a hard link to the previous layout's copy or to `blob.path`."""
    target = blobs / blob.hex
    if target.exists():
        return
    old = previous / blob.hex
    for source in (old, blob.path):
        try:
            if source.stat().st_size != blob.size:
                continue
        except OSError:
            continue
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(source, target)
        return
    raise BuildError(f"layer blob {blob.digest} is missing or has the wrong size", path=blob.path)


def _json_blob(blobs: Path, document: Mapping[str, Any], media_type: str) -> dict[str, Any]:
    """Write `document` as a blob; return its descriptor."""
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_into_place(new: Path, dest: Path) -> None:
    """Make directory `new` become `dest`, atomically when the kernel allows; drop the old one."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        shutil.rmtree(new)  # `new` now holds the old `dest`
        return
    old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old)


def write_oci_layout(dest: Path, layers: Sequence[LayerBlob], config: Mapping[str, Any], ref: str) -> str:
    """Write the OCI image layout `dest` holding one image tagged `ref`; return its manifest digest.

    `layers` are in dependency order with this image's layer last and must match the config's
    `rootfs.diff_ids`. The layout is assembled in a temporary directory next to `dest` and
    swapped into place, so a failure leaves the previous layout untouched. Blobs are
    hard-linked from the previous layout or from `LayerBlob.path`, never recompressed.
    """
    expected = list(config.get("rootfs", {}).get("diff_ids", []))
    if expected != [layer.diff_id for layer in layers]:
        raise BuildError("the OCI config's rootfs.diff_ids do not match the layers given", path=dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=owned(f".{dest.name}."), suffix=".tmp", dir=dest.parent))
    try:
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for layer in layers:
            _place_blob(layer, blobs, dest / "blobs" / "sha256")
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _json_blob(blobs, config, MEDIA_CONFIG),
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
        }
        descriptor = _json_blob(blobs, manifest, MEDIA_MANIFEST)
        descriptor["annotations"] = {REF_NAME: ref}
        descriptor["platform"] = oci_platform()
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [descriptor]}
        (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
        (tmp / "index.json").write_text(json.dumps(index, separators=(",", ":")), encoding="utf-8")
        os.chmod(tmp, 0o755)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(descriptor["digest"])


def read_oci_layout(layout: Path, ref: str | None = None) -> tuple[list[LayerBlob], dict[str, Any]]:
    """The layers (as blobs inside `layout`) and the config of the image tagged `ref`.

    Without `ref`, the layout must hold exactly one image. Used to stack a dependency's layers
    under a new image.
    """
    blobs = layout / "blobs" / "sha256"

    def load(digest: str) -> Any:
        return json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())

    try:
        manifests = json.loads((layout / "index.json").read_bytes())["manifests"]
        chosen = [m for m in manifests if ref is None or m.get("annotations", {}).get(REF_NAME) == ref]
        if len(chosen) != 1:
            raise DgrError(f"{len(chosen)} images tagged {ref!r} in this OCI layout", path=layout)
        manifest = load(chosen[0]["digest"])
        config = load(manifest["config"]["digest"])
        diff_ids = config["rootfs"]["diff_ids"]
        layers = [
            LayerBlob(
                blobs / d["digest"].removeprefix("sha256:"), d["digest"], diff_id, d["size"], d["mediaType"]
            )
            for d, diff_id in zip(manifest["layers"], diff_ids, strict=True)
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DgrError(f"cannot read OCI layout: {exc}", path=layout) from None
    return layers, config


@dataclass(frozen=True)
class LayoutImage:
    """The one image of an OCI layout as tools name it: its tag and its digests."""

    layout: Path
    tag: str
    manifest_digest: str
    config_digest: str

    @property
    def reference(self) -> str:
        """The containers-transports(5) reference: `oci:LAYOUT:TAG`."""
        return f"oci:{self.layout}:{self.tag}"


def describe_layout(layout: Path) -> LayoutImage:
    """The tag and the manifest and config digests of the one image in the OCI layout `layout`."""
    try:
        manifests = json.loads((layout / "index.json").read_bytes())["manifests"]
        if len(manifests) != 1:
            raise DgrError(f"{len(manifests)} images in this OCI layout, expected one", path=layout)
        descriptor = manifests[0]
        digest = descriptor["digest"]
        manifest = json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())
        return LayoutImage(
            layout, descriptor.get("annotations", {}).get(REF_NAME, ""), digest, manifest["config"]["digest"]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DgrError(f"cannot read OCI layout: {exc}", path=layout) from None


@dataclass(frozen=True)
class LayerSource:
    """A layer still to be packed: a directory (or several, merged; lowest first).

    `key` names its content for the :class:`BlobCache` (a dependency's image ID, the dgr
    internals' version...): a blob remembered under it is reused without reading the
    directory. Without a key the directory is always packed (then stored by digest).
    """

    directories: Path | tuple[Path, ...]
    key: str | None = None


def export_image(
    dest: Path,
    manifest: Manifest,
    *,
    version: str,
    created: str,
    layers: Sequence[LayerSource | LayerBlob],
    cache: BlobCache,
    ref: str | None = None,
    labels: Mapping[str, str] | None = None,
    inherited_labels: Mapping[str, str] | None = None,
) -> str:
    """Write the OCI layout `dest` for `manifest`; return the image manifest digest.

    `layers` are bottom first (dependencies, then shared layers, this build's layer last);
    each is a ready blob or a :class:`LayerSource` packed through `cache`. The tag is `ref`
    (default: the OCI tag of `version`, see dgr.names.oci_tag).
    """
    blobs = [layer if isinstance(layer, LayerBlob) else _pack(layer, cache) for layer in layers]
    config = image_config(
        manifest,
        version=version,
        diff_ids=[blob.diff_id for blob in blobs],
        created=created,
        labels=labels,
        inherited_labels=inherited_labels,
    )
    return write_oci_layout(dest, blobs, config, ref or oci_tag(version))


def _pack(source: LayerSource, cache: BlobCache) -> LayerBlob:
    directories = source.directories
    return cache.layer_from_directory(
        directories if isinstance(directories, Path) else list(directories), key=source.key
    )
