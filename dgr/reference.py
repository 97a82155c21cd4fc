"""A dependency as a manifest writes it: an appc image name or an OCI image reference.

OCI images are written as containers-transports(5) references: `docker://REGISTRY/REPO:TAG`
or `@sha256:HEX`, `oci:PATH[:TAG]`, `oci-archive:PATH[:TAG]` (PATH relative to the folder of
the manifest that writes it). This module only parses them (manifests, pod manifests and the
store read them); dgr/ociref.py fetches them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dgr.errors import ManifestError
from dgr.names import ImageName

TRANSPORTS = ("docker://", "oci:", "oci-archive:")
DOCKER_HUB = "docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A repository path component and a registry host[:port] (the distribution spec's grammar).
COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")


@dataclass(frozen=True)
class OciReference:
    """A containers-transports(5) reference to an OCI image, as written in a manifest."""

    transport: str  # docker | oci | oci-archive
    location: str  # docker: [REGISTRY/]REPO; oci, oci-archive: PATH as written
    tag: str = ""  # docker: the tag; oci, oci-archive: the image's ref name in the layout
    digest: str = ""  # docker only: sha256:HEX
    folder: str = ""  # where a relative PATH starts: the folder of the manifest that writes it

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.location}" + (f"@{self.digest}" if self.digest else f":{self.tag}")
        return f"{self.transport}:{self.location}" + (f":{self.tag}" if self.tag else "")

    @property
    def local(self) -> bool:
        """Whether the image is a file of this host (a layout or an archive)."""
        return self.transport != "docker"

    @property
    def registry(self) -> str:
        """The registry host[:port] of a docker reference (Docker Hub when none is written)."""
        first, sep, _ = self.location.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return first
        return DOCKER_HUB

    @property
    def tiny_name(self) -> str:
        """The last path segment (repository or file name), for graphs and logs."""
        return PurePosixPath(self.location).name

    def path(self) -> Path:
        """The layout or archive of a local reference (PATH relative to `folder`)."""
        return (Path(self.folder or ".") / self.location).resolve()

    def source(self, digest: str = "") -> str:
        """The skopeo source: the reference with an absolute path, or pinned to `digest`."""
        if self.transport == "docker":
            return f"docker://{self.location}@{digest}" if digest else str(self)
        return f"{self.transport}:{self.path()}" + (f":{self.tag}" if self.tag else "")

    def pinned(self, digest: str) -> str:
        """The reference with the digest it resolved to: `REF@sha256:...` (as built manifests
        and logs show it)."""
        return str(self) if self.digest else f"{self}@{digest}"


Reference = ImageName | OciReference  # a dependency as a manifest writes it


def is_oci_reference(text: str) -> bool:
    return text.strip().startswith(TRANSPORTS)


def parse_reference(text: str, *, source: Path | str | None = None, key: str = "") -> OciReference:
    """Parse a containers-transports(5) reference; ManifestError naming `source` and `key`.

    A relative PATH is relative to the folder of `source` (the manifest that writes it)."""
    text = text.strip()

    def fail(why: str, hint: str | None = None) -> ManifestError:
        return ManifestError(f"invalid OCI reference {text!r}: {why}", path=source, key=key, hint=hint)

    if text.startswith("docker://"):
        return _parse_docker(text[len("docker://") :], fail)
    transport, _, rest = text.partition(":")
    if transport not in ("oci", "oci-archive"):
        raise fail("transports are docker://, oci: and oci-archive:")
    path, _, tag = rest.partition(":")
    if not path:
        raise fail("no path", hint=f"{transport}:PATH[:TAG], PATH relative to the manifest's folder")
    if tag and not TAG.match(tag):
        raise fail(f"{tag!r} is not a valid tag")
    folder = str(Path(source).parent.absolute()) if source is not None else ""
    return OciReference(transport, path, tag, folder=folder)


def _parse_docker(rest: str, fail: Callable[..., ManifestError]) -> OciReference:
    name, at, digest = rest.partition("@")
    if at and not DIGEST.match(digest):
        raise fail(
            f"{digest!r} is not a sha256 digest", hint="@sha256: followed by 64 lower-case hex digits"
        )
    tag = ""
    head, slash, last = name.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        name = f"{head}{slash}{last}"
        if at:
            raise fail("a tag and a digest: give one of them", hint="keep the digest, it pins the image")
        if not TAG.match(tag):
            raise fail(f"{tag!r} is not a valid tag")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if not HOST.match(parts[0]):
            raise fail(f"{parts[0]!r} is not a registry host[:port]")
        parts = parts[1:]
    if not parts or not all(COMPONENT.match(p) for p in parts):
        raise fail(
            "the repository must be lower-case letters and digits separated by '.', '_', '__' or '-'",
            hint="docker://REGISTRY/REPO:TAG or docker://REGISTRY/REPO@sha256:...",
        )
    return OciReference("docker", name, tag or ("" if at else "latest"), digest)


def parse_dependency(text: str, *, source: Path | str | None = None, key: str = "") -> Reference:
    """A dependency as a manifest writes it: an OCI reference, or an appc image name."""
    if is_oci_reference(text):
        return parse_reference(text, source=source, key=key)
    return ImageName.parse(text, source=source, key=key)
