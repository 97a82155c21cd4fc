"""OCI images as dependencies: containers-transports(5) references, fetched into the store.

A dependency (`aci.dependencies`, `builder.dependencies`, `tester.aci.dependencies`, a pod
app's `dependencies`) written as one of these is an OCI image rather than an appc name:

* `docker://REGISTRY/REPO:TAG` or `docker://REGISTRY/REPO@sha256:HEX` (a registry; a name
  without a registry is Docker Hub's, as skopeo reads it);
* `oci:PATH[:TAG]`: an OCI image layout (PATH absolute, or relative to the folder of the
  manifest that writes it: the project or pod folder);
* `oci-archive:PATH[:TAG]`: the same as a tar archive.

:func:`resolve_image` pins a reference to the digest of its image manifest and makes sure the
image is in the store (dgr/ocistore.py, :class:`~dgr.ocistore.OciStore`): `skopeo copy` into a
temporary layout next to the store, then every blob checked against its digest and every
layer against the config's `diff_id` while it is extracted, all under a lock per reference
so that parallel builds (and xdist workers) fetch it once. skopeo reads the host's
containers-registries.conf(5) (mirrors, insecure registries, `CONTAINERS_REGISTRIES_CONF`),
containers-policy.json(5) and containers-auth.json(5) (`REGISTRY_AUTH_FILE`, what `podman
login` wrote). A tag of a registry is resolved once and remembered in the store, as podman's
`missing` pull policy does (`dgr store rm docker://...` forgets it); a local layout or
archive is read again at every build, so that a new image there is picked up.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgr.discovery import host_policy
from dgr.errors import DgrError
from dgr.layer import atomic_file
from dgr.log import log, step
from dgr.ociconfig import oci_platform
from dgr.ocistore import OciStore
from dgr.process import require_tool, run
from dgr.push.targets import containers_auth_file
from dgr.reference import DIGEST, OciReference

if TYPE_CHECKING:
    from dgr.config import Config
    from dgr.ocistore import OciStore, StoredOciImage

REF_NAME = "org.opencontainers.image.ref.name"  # a tag in an OCI layout's index.json
REGISTRIES_CONF_ENV = "CONTAINERS_REGISTRIES_CONF"
SKOPEO_TIMEOUT = 900.0  # one fetch, whole; a large base on a slow link takes minutes
MEDIA_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class OciFetchError(DgrError):
    """An OCI image could not be fetched, or did not pass verification."""


# --- resolving --------------------------------------------------------------------------------


def resolve_image(ref: OciReference, config: Config, *, where: str = "") -> StoredOciImage:
    """The stored image `ref` stands for, fetched first when needed (see the module docstring).

    Errors name the reference (and `where`: the manifest that asks for it); a failed fetch
    leaves nothing in the store.
    """

    store = OciStore(config.store_path)
    with store.lock(ref.source()):
        fetcher = _Fetcher(ref, config, where, store)
        digest = fetcher.current_digest(store)
        stored = store.get(digest)
        if stored is None:
            stored = fetcher.fetch(store, digest)
        if not ref.local:
            store.remember_tag(str(ref), digest)
    log.debug("%s is %s", ref, digest)
    return stored


class _Fetcher:
    """What resolving one reference needs: the digest it stands for, and the copy into a store."""

    def __init__(self, ref: OciReference, config: Config, where: str, store: OciStore) -> None:
        self.ref = ref
        self.config = config
        self.where = where
        self.store = store

    def error(self, message: str, **kwargs: Any) -> OciFetchError:
        return OciFetchError(f"{self.ref}: {message}", path=self.where or None, **kwargs)

    def current_digest(self, store: OciStore) -> str:
        """The digest of the image manifest (for this host's platform) the reference names.

        A local layout or archive is read every time; a registry reference is asked once and
        remembered (a digest that names an index too: the store records the platform's image).
        """
        ref = self.ref
        if ref.local:
            reader = _LayoutReader(ref, self.error)
            return self.pick_platform(reader.tagged(), reader.blob)
        remembered = store.tag(str(ref))
        if remembered is not None:
            return remembered
        if ref.digest and store.get(ref.digest) is not None:
            return ref.digest  # an image manifest of this platform, already here: no request

        def read(digest: str) -> bytes:
            raw = self.skopeo_inspect_raw(ref.source(digest))
            if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
                raise self.error(
                    f"the registry served a manifest that does not match {digest}",
                    hint="the registry or a mirror is corrupt or was tampered with: nothing was stored",
                )
            return raw

        if ref.digest:
            return self.pick_platform(ref.digest, read)
        raw = self.skopeo_inspect_raw(ref.source())
        return self.pick_platform("sha256:" + hashlib.sha256(raw).hexdigest(), read, raw)

    def pick_platform(self, digest: str, read: Callable[[str], bytes], raw: bytes | None = None) -> str:
        """The image manifest digest: `digest` when it names an image manifest, the entry for
        this host's platform when it names an index. `read` gives the (verified) bytes of a
        digest; `raw` those of `digest` when they are already known."""

        raw = read(digest) if raw is None else raw
        try:
            document = json.loads(raw)
            media = document.get("mediaType", "")
            entries = document.get("manifests")
        except (ValueError, AttributeError):
            raise self.error(f"{digest} is not a JSON manifest or index") from None
        if media not in MEDIA_INDEXES and not isinstance(entries, list):
            return digest
        wanted = oci_platform()
        for entry in entries or []:
            platform = entry.get("platform") or {}
            if all(platform.get(k) == v for k, v in wanted.items()) and DIGEST.match(
                entry.get("digest", "")
            ):
                return self.pick_platform(str(entry["digest"]), read)
        shown = ", ".join(
            "/".join(str(p.get(k)) for k in ("os", "architecture") if p.get(k))
            for p in (e.get("platform") or {} for e in entries or [])
        )
        raise self.error(
            f"no image for {wanted['os']}/{wanted['architecture']} in its index",
            hint=f"it has: {shown or 'no platform'}",
        )

    # --- skopeo -------------------------------------------------------------------------------

    def skopeo_options(self, prefix: str) -> list[str]:
        """Options for a registry: registries.conf, TLS, credentials (containers-auth.json(5))."""
        if self.ref.transport != "docker":
            return []

        options = []
        registries = os.environ.get(REGISTRIES_CONF_ENV)
        if registries:  # skopeo before 1.10 reads only its flag
            options += ["--registries-conf", registries]
        url = f"https://{self.ref.registry}/"
        policy = host_policy(self.config)
        if policy.allows("tls", url) or policy.allows("http", url):
            options.append(f"--{prefix}tls-verify=false")
        auth = containers_auth_file()
        if auth is not None:
            options += [f"--{prefix}authfile", str(auth)]
        return options

    def skopeo(self, args: list[str], what: str, *, stdout: Path | None = None) -> None:
        """Run skopeo with `args` (its stdout into the file `stdout`, kept apart from its
        messages); a OciFetchError naming the reference when it fails."""

        argv = [require_tool("skopeo"), *_policy_args(self.store.root), *args]
        if stdout is not None:
            argv = ["/bin/sh", "-c", 'out=$1; shift; exec "$@" > "$out"', "sh", str(stdout), *argv]
        result = run(argv, check=False, timeout=SKOPEO_TIMEOUT, what=what)
        if result.returncode != 0:
            raise self.skopeo_error(result.output)

    def skopeo_inspect_raw(self, source: str) -> bytes:
        """The manifest (or index) `source` names, byte for byte as the registry serves it."""
        with tempfile.TemporaryDirectory(prefix="dgr-inspect-") as tmp:
            out = Path(tmp) / "manifest"
            self.skopeo(
                ["inspect", "--raw", *self.skopeo_options(""), source],
                f"skopeo inspect {source}",
                stdout=out,
            )
            return out.read_bytes()

    def skopeo_error(self, output: str) -> OciFetchError:
        """skopeo's failure as one message naming the reference, with a hint."""
        text = output.lower()
        details = "\n".join(output.rstrip().splitlines()[-10:])
        host = self.ref.registry if self.ref.transport == "docker" else ""
        cases: list[tuple[tuple[str, ...], str, str]] = [
            (
                ("http response to https client",),
                f"{host} speaks plain HTTP, not HTTPS",
                f"if you trust this network, add http:{host} to insecureOptions in config.yml, "
                "or mark the registry insecure in registries.conf",
            ),
            (
                ("x509", "certificate"),
                f"the TLS certificate of {host} is not trusted",
                f"install the registry's CA, or add tls:{host} to insecureOptions",
            ),
            (
                ("unauthorized", "authentication required", "denied", "401", "403", "invalid username"),
                f"{host} refused access",
                f"log in (podman login {host}), or point REGISTRY_AUTH_FILE at an auth file "
                "that holds credentials for it",
            ),
            (
                ("manifest unknown", "name unknown", "not found", "no such image", "404"),
                "no such image (unknown repository, tag or digest)",
                "check the name, the tag or the digest",
            ),
            (
                ("digest did not match", "digest mismatch", "does not match digest", "unexpected digest"),
                "its content does not match its digest",
                "the registry or the layout is corrupt or was tampered with: nothing was stored",
            ),
            (
                ("no such host", "connection refused", "i/o timeout", "no route to host",
                 "network is unreachable", "timeout", "connection reset", "eof"),
                f"cannot reach {host or 'the source'}",
                "check the registry address and that it is running (and registries.conf mirrors)",
            ),
            (
                ("no such file or directory",),
                "the layout or archive does not exist",
                "PATH is relative to the folder of the manifest",
            ),
        ]  # fmt: skip
        for words, message, hint in cases:
            if any(word in text for word in words):
                return self.error(message, hint=hint, details=details)
        return self.error("skopeo failed", details=details)

    # --- copying into the store -----------------------------------------------------------

    def fetch(self, store: OciStore, digest: str) -> StoredOciImage:
        """Copy the image `digest` into a temporary layout beside the store, then add it."""
        ref = self.ref
        scratch = store.scratch()
        try:
            layout = scratch / "layout"
            source = ref.source(digest) if ref.transport == "docker" else ref.source()
            with step(f"Fetching {ref.pinned(digest)}"):
                self.skopeo(
                    ["copy", "--quiet", *self.skopeo_options("src-"), source, f"oci:{layout}:image"],
                    f"skopeo copy {source}",
                )
                try:
                    return store.add(layout, digest=digest, reference=str(ref), trusted=trusted(ref))
                except DgrError as exc:  # name the reference, not a temporary file
                    raise self.error(exc.message, hint=exc.hint, details=exc.details) from None
        finally:
            store.drop_scratch(scratch)


def trusted(ref: OciReference) -> bool:
    """Whether the user vouched for the image's exact bytes: a local file, or a pinned
    digest. Other images (a registry tag) lose setuid/setgid bits and file capabilities."""
    return ref.local or bool(ref.digest)


def _policy_args(folder: Path) -> list[str]:
    """skopeo's trust policy: the host's containers-policy.json(5) when there is one, else one
    that accepts any image (what the digests then guarantee is all there is), kept in
    `folder` (the store's, not a shared temporary folder)."""
    for path in (Path.home() / ".config/containers/policy.json", Path("/etc/containers/policy.json")):
        if path.is_file():
            return []
    policy = folder / "policy.json"
    if not policy.is_file():
        with atomic_file(policy) as out:
            out.write(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}).encode())
    return ["--policy", str(policy)]


class _LayoutReader:
    """Reads `index.json` and blobs of a local layout (a folder or an oci-archive tar)."""

    def __init__(self, ref: OciReference, error: Callable[..., OciFetchError]) -> None:
        self.ref = ref
        self.path = ref.path()
        self.error = error
        self.archive: dict[str, tarfile.TarInfo] | None = None

    def read(self, name: str) -> bytes:
        try:
            if self.ref.transport == "oci":
                return (self.path / name).read_bytes()
            with tarfile.open(self.path, "r:*") as tar:
                if self.archive is None:
                    self.archive = {m.name.removeprefix("./"): m for m in tar.getmembers()}
                member = self.archive.get(name)
                data = tar.extractfile(member) if member is not None else None
                if data is None:
                    raise FileNotFoundError(name)
                return data.read()
        except FileNotFoundError:
            if not self.path.exists():
                raise self.error(
                    f"{self.path} does not exist", hint="PATH is relative to the folder of the manifest"
                ) from None
            raise self.error(f"{name} is missing: not an OCI image layout") from None
        except (OSError, tarfile.TarError) as exc:
            raise self.error(f"cannot read {self.path}: {exc}") from None

    def blob(self, digest: str) -> bytes:
        if not DIGEST.match(digest):
            raise self.error(f"invalid digest {digest!r} in its index")
        data = self.read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        if hashlib.sha256(data).hexdigest() != digest.removeprefix("sha256:"):
            raise self.error(f"blob {digest} does not match its digest", hint="the layout is corrupt")
        return data

    def tagged(self) -> str:
        """The digest that index.json gives the tag (or its only image when no tag is asked)."""
        try:
            manifests = json.loads(self.read("index.json"))["manifests"]
            found: list[Mapping[str, Any]] = [
                m
                for m in manifests
                if not self.ref.tag or (m.get("annotations") or {}).get(REF_NAME) == self.ref.tag
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self.error("index.json is not an OCI image index") from None
        if len(found) != 1:
            tags = sorted(str((m.get("annotations") or {}).get(REF_NAME, "")) for m in manifests)
            what = f"no image tagged {self.ref.tag!r}" if self.ref.tag else f"{len(found)} images"
            raise self.error(
                f"{what} in {self.path}",
                hint=f"tags there: {', '.join(t for t in tags if t) or 'none'}"
                + ("" if self.ref.tag else "; name one with :TAG"),
            )
        digest = str(found[0].get("digest", ""))
        if not DIGEST.match(digest):
            raise self.error(f"invalid digest {digest!r} in index.json")
        return digest
