"""The store's OCI images: those dependencies name by a containers-transports(5) reference.

They live under `<store>/oci/` beside the appc images (dgr/store.py), pinned by the digest of
their image manifest, their blobs kept as fetched and their layers extracted once (fetched
by dgr/ociref.py).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from dgr import userns
from dgr.errors import DgrError
from dgr.extract import WhiteoutMode, extract_layer
from dgr.layer import atomic_file
from dgr.leftovers import make_dir, remove_stale
from dgr.ociconfig import oci_platform
from dgr.reference import parse_reference

MEDIA_GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
MEDIA_TAR_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class OciLayer:
    """One layer of a stored OCI image: its blob as fetched, and the folder it extracts to."""

    digest: str  # of the blob (compressed as the source has it)
    diff_id: str  # of the uncompressed tar
    size: int
    media_type: str
    blob: Path
    directory: Path  # extracted: overlay whiteouts, owners shifted (dgr/userns.py)


@dataclass(frozen=True)
class StoredOciImage:
    """An OCI image in the store: pinned by the digest of its image manifest."""

    digest: str
    reference: str  # as first written (the store keeps one image per digest)
    config_digest: str
    layers: tuple[OciLayer, ...]
    trusted: bool
    blobs: Path

    def config(self) -> dict[str, Any]:
        """The image config (`config`, `rootfs`, `history`, ...), as fetched."""
        data = json.loads((self.blobs / self.config_digest.removeprefix("sha256:")).read_bytes())
        if not isinstance(data, dict):
            raise DgrError(f"the config of {self.reference} is not a JSON object", path=self.blobs)
        return data


class _Hashing:
    """A readable stream that hashes what is read through it (sha256)."""

    def __init__(self, inner: IO[bytes], name: str) -> None:
        self.inner = inner
        self.name = name
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        """Read to the end (what tar leaves after its end marker) and return the hex digest."""
        while self.read(1 << 20):
            pass
        return self.hash.hexdigest()


class OciStore:
    """OCI images fetched for dependencies (dgr/ociref.py), under `<store>/oci/`:

    ```
    blobs/sha256/<hex>                every blob of every image, as fetched (read-only)
    layers/<diff-id hex>[-untrusted]/ each layer extracted once (overlay lower directories)
    images/<digest hex>.json          an image: reference, config digest, layers
    tags/<sha256 of reference>.json   a registry tag and the digest it resolved to
    locks/, .fetch-*/                 locks per reference; fetches in progress
    policy.json                       skopeo's policy when the host has none (dgr/ociref.py)
    ```
    An image record is written last, after its blobs and layers are in place, so a record
    always describes a complete image; a failed fetch removes its `.fetch-*` folder.
    """

    def __init__(self, store_root: Path) -> None:
        self.root = store_root / "oci"
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.images = self.root / "images"
        self.tags = self.root / "tags"

    def lock(self, key: str) -> FileLock:
        """A lock for resolving `key` (a reference): one fetch at a time, across processes."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")))

    def get(self, digest: str) -> StoredOciImage | None:
        """The stored image of manifest `digest`, or None."""
        if not SHA256.match(digest):
            return None
        try:
            record = json.loads((self.images / f"{digest.removeprefix('sha256:')}.json").read_text())
            layers = tuple(
                OciLayer(
                    layer["digest"],
                    layer["diffId"],
                    int(layer["size"]),
                    layer["mediaType"],
                    self.blobs / layer["digest"].removeprefix("sha256:"),
                    self.layers / layer["directory"],
                )
                for layer in record["layers"]
            )
            return StoredOciImage(
                digest, record["reference"], record["config"], layers, bool(record["trusted"]), self.blobs
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DgrError(
                f"the store's record of {digest} is unreadable: {exc}", path=self.images
            ) from None

    def list(self) -> builtins.list[StoredOciImage]:
        if not self.images.is_dir():
            return []
        found = (self.get("sha256:" + p.stem) for p in sorted(self.images.glob("*.json")))
        return [image for image in found if image is not None]

    def _tag_path(self, reference: str) -> Path:
        return self.tags / (hashlib.sha256(reference.encode()).hexdigest() + ".json")

    def tag(self, reference: str) -> str | None:
        """The digest a registry tag resolved to when it was fetched, if its image is here."""
        try:
            digest = str(json.loads(self._tag_path(reference).read_text())["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return digest if self.get(digest) is not None else None

    def remember_tag(self, reference: str, digest: str) -> None:
        if self.tag(reference) == digest:
            return
        self.tags.mkdir(parents=True, exist_ok=True)
        with atomic_file(self._tag_path(reference)) as out:
            out.write(json.dumps({"reference": reference, "digest": digest}).encode())

    def remove(self, reference: str) -> builtins.list[StoredOciImage]:
        """Remove images by digest (`sha256:...`, a unique prefix is enough) or by the
        reference they were fetched for (a registry tag is then asked again at the next
        build); their layers and blobs go too, unless another image uses them."""

        images = self.list()
        if reference.startswith("sha256:"):
            matches = [i for i in images if i.digest.startswith(reference)]
            if len(matches) > 1:
                raise DgrError(f"{reference!r} matches {len(matches)} images", path=self.root)
            key = None
        else:
            key = str(parse_reference(reference))
            digest = self.tag(key)
            matches = [i for i in images if i.reference == key or i.digest == digest]
        if not matches and not (key and self._tag_path(key).exists()):
            raise DgrError(f"no image {reference!r} in the store", path=self.root)
        gone = {i.digest for i in matches}
        for tag in self.tags.glob("*.json") if self.tags.is_dir() else []:
            try:
                points = json.loads(tag.read_text()).get("digest") in gone
            except (OSError, ValueError, AttributeError):
                points = True
            if points or (key is not None and tag == self._tag_path(key)):
                tag.unlink()
        for image in matches:
            (self.images / f"{image.digest.removeprefix('sha256:')}.json").unlink()
        kept = self.list()
        used = {p for i in kept for layer in i.layers for p in (layer.blob, layer.directory)}
        used.update(self.blobs / i.config_digest.removeprefix("sha256:") for i in kept)
        for image in matches:
            for path in (
                self.blobs / image.config_digest.removeprefix("sha256:"),
                *(p for layer in image.layers for p in (layer.blob, layer.directory)),
            ):
                if path not in used and path.is_dir():
                    shutil.rmtree(path)
                elif path not in used:
                    path.unlink(missing_ok=True)
        return matches

    def scratch(self) -> Path:
        """A folder for one fetch in progress, beside the store (same file system); those a
        killed dgr left are removed first (dgr/leftovers.py)."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale(self.root, ".fetch-")
        return make_dir(self.root, ".fetch-")

    @staticmethod
    def drop_scratch(scratch: Path) -> None:
        shutil.rmtree(scratch, ignore_errors=True)

    def add(self, layout: Path, *, digest: str, reference: str, trusted: bool) -> StoredOciImage:
        """Verify the one image of the OCI `layout` (in a scratch folder of this store) and add
        it as the image of manifest `digest`: every blob against its digest, every layer
        against its diff_id as it is extracted (refusing what escapes it, and devices)."""

        source = _LayoutBlobs(layout)
        manifest = source.json(source.manifest_digest(), "image manifest")
        try:
            config_digest = str(manifest["config"]["digest"])
            descriptors = list(manifest["layers"])
        except (KeyError, TypeError):
            raise DgrError("its image manifest has no config or no layers") from None
        config = source.json(config_digest, "image config")
        wanted = oci_platform()
        have = {k: config.get(k) for k in ("os", "architecture")}
        if any(have[k] != wanted[k] for k in have):
            raise DgrError(
                f"it is an image for {have['os']}/{have['architecture']}, "
                f"this host runs {wanted['os']}/{wanted['architecture']}"
            )
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(descriptors):
            raise DgrError("its config's rootfs.diff_ids do not match its layers")
        ids = userns.current()
        layers = []
        extracted = source.root.parent / "layers"
        for index, (descriptor, diff_id) in enumerate(zip(descriptors, diff_ids, strict=True)):
            what = f"layer {index + 1} of {len(descriptors)} ({str(descriptor.get('digest'))[:19]}...)"
            blob = source.check_blob(descriptor, what)
            if not SHA256.match(str(diff_id)):
                raise DgrError(f"{what}: invalid diff_id {str(diff_id)[:80]!r}")
            name = str(diff_id).removeprefix("sha256:") + ("" if trusted else "-untrusted")
            layer = OciLayer(
                str(descriptor["digest"]),
                str(diff_id),
                int(descriptor["size"]),
                str(descriptor.get("mediaType", "")),
                self.blobs / blob.name,
                self.layers / name,
            )
            layers.append(layer)
            if layer.directory.is_dir() or (extracted / name).is_dir():
                continue
            with _open_layer(blob, layer.media_type, what) as raw:
                stream = _Hashing(raw, what)
                try:
                    extract_layer(
                        stream,  # type: ignore[arg-type]
                        extracted / name,
                        whiteouts=WhiteoutMode.OVERLAY,
                        ids=ids,
                        trusted=trusted,
                        refuse_devices=True,
                    )
                except DgrError as exc:
                    raise DgrError(f"{what}: {exc.message}", hint=exc.hint, details=exc.details) from None
                except OSError as exc:
                    raise DgrError(f"{what}: cannot be read: {exc}") from None
                if "sha256:" + stream.drain() != layer.diff_id:
                    raise DgrError(f"{what}: its content does not match the config's diff_id {diff_id}")
            ids.give(extracted / name)
        self._commit(source, [config_digest, *(layer.digest for layer in layers)], extracted)
        record = {
            "reference": reference,
            "digest": digest,
            "config": config_digest,
            "trusted": trusted,
            "layers": [
                {
                    "digest": layer.digest,
                    "diffId": layer.diff_id,
                    "size": layer.size,
                    "mediaType": layer.media_type,
                    "directory": layer.directory.name,
                }
                for layer in layers
            ],
        }
        self.images.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.images / f"{digest.removeprefix('sha256:')}.json") as out:
            out.write(json.dumps(record, indent=1).encode())
        stored = self.get(digest)
        assert stored is not None
        return stored

    def _commit(self, source: _LayoutBlobs, digests: builtins.list[str], extracted: Path) -> None:
        """Move the verified blobs and the extracted layers into place (kept when present)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.layers.mkdir(parents=True, exist_ok=True)
        for digest in digests:
            hex_ = digest.removeprefix("sha256:")
            if not (self.blobs / hex_).exists():
                path = source.blobs / hex_
                path.chmod(0o444)
                os.replace(path, self.blobs / hex_)
        if extracted.is_dir():
            for folder in extracted.iterdir():
                if not (self.layers / folder.name).exists():
                    try:
                        os.rename(folder, self.layers / folder.name)
                    except OSError as exc:  # another fetch put it there meanwhile
                        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                            raise


class _LayoutBlobs:
    """The one image of an OCI layout that skopeo wrote, read with every blob verified."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def manifest_digest(self) -> str:
        try:
            manifests = json.loads((self.root / "index.json").read_text())["manifests"]
            (descriptor,) = manifests
            return str(descriptor["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DgrError("the fetched layout does not hold exactly one image") from None

    def read(self, digest: str, what: str) -> bytes:
        if not SHA256.match(digest):
            raise DgrError(f"{what}: invalid digest {digest[:80]!r}")
        try:
            data = (self.blobs / digest.removeprefix("sha256:")).read_bytes()
        except OSError:
            raise DgrError(f"{what} {digest} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest.removeprefix("sha256:"):
            raise DgrError(f"{what} {digest}: its content does not match its digest")
        return data

    def json(self, digest: str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(self.read(digest, what))
        except ValueError:
            raise DgrError(f"{what} {digest} is not JSON") from None
        if not isinstance(data, dict):
            raise DgrError(f"{what} {digest} is not a JSON object")
        return data

    def check_blob(self, descriptor: Any, what: str) -> Path:
        """The verified blob of a layer `descriptor` (size and sha256)."""
        try:
            digest, size = str(descriptor["digest"]), int(descriptor["size"])
        except (KeyError, TypeError, ValueError):
            raise DgrError(f"{what}: its descriptor has no digest or size") from None
        if not SHA256.match(digest):
            raise DgrError(f"{what}: invalid digest {digest[:80]!r}")
        path = self.blobs / digest.removeprefix("sha256:")
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            actual = path.stat().st_size
        except OSError:
            raise DgrError(f"{what}: its blob is missing") from None
        if actual != size or h.hexdigest() != digest.removeprefix("sha256:"):
            raise DgrError(f"{what}: its content does not match its digest (or size)")
        return path


@contextlib.contextmanager
def _open_layer(blob: Path, media_type: str, what: str) -> Iterator[IO[bytes]]:
    """The uncompressed tar stream of a layer blob of `media_type`."""
    if media_type in MEDIA_GZIP_LAYERS:
        with open(blob, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield unzipped  # type: ignore[misc]
    elif media_type in MEDIA_TAR_LAYERS:
        with open(blob, "rb") as raw:
            yield raw
    else:
        raise DgrError(
            f"{what}: layers of media type {media_type!r} are not supported (gzip or plain tar only)",
            hint="copy the image with `skopeo copy --dest-compress-format gzip` first",
        )
