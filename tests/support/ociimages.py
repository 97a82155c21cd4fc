"""Small OCI images made by hand for the tests: layers from a list of entries, a layout, a
push to a registry with skopeo.

    layout = write_layout(tmp_path / "base", [busybox_layer()], tag="1", env=["A=1"])
    push(layout, "1", registry.host, "busybox")   # docker://127.0.0.1:PORT/busybox:1
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path(os.path.realpath(shutil.which("busybox") or "/usr/bin/busybox"))
SKOPEO_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'


@dataclass(frozen=True)
class Entry:
    """One tar entry: `kind` is file, dir, symlink, link (hard), char, block or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0
    device: tuple[int, int] = (0, 0)
    xattrs: dict[str, str] = field(default_factory=dict)


KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "link": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer_tar(entries: list[Entry]) -> bytes:
    """An uncompressed layer tar of `entries`, in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = KINDS[entry.kind]
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = 1700000000
            info.linkname = entry.target
            info.devmajor, info.devminor = entry.device
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs.items()}
            data = None
            if entry.kind == "file":
                info.size = len(entry.data)
                data = io.BytesIO(entry.data)
            tar.addfile(info, data)
    return out.getvalue()


def busybox_layer(*extra: Entry) -> list[Entry]:
    """busybox as /bin/busybox with /bin/sh and a few applets, /etc/passwd, then `extra`."""
    entries = [
        Entry("bin", "dir", mode=0o755),
        Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755),
        *(Entry(f"bin/{name}", "symlink", target="busybox") for name in ("sh", "cat", "ls", "echo", "id")),
        Entry("etc", "dir", mode=0o755),
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nweb:x:33:44:web:/var/www:/bin/sh\n"),
        Entry("etc/group", data=b"root:x:0:\nweb:x:44:\n"),
        Entry("tmp", "dir", mode=0o1777),
    ]
    return entries + list(extra)


def _blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def write_layout(
    dest: Path,
    layers: list[list[Entry]],
    *,
    tag: str = "latest",
    env: list[str] | None = None,
    config: dict[str, Any] | None = None,
    architecture: str = "amd64",
    compress: bool = True,
) -> str:
    """Write (or add to) the OCI layout `dest` an image of `layers` tagged `tag`; its digest."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors, diff_ids = [], []
    for entries in layers:
        tar = layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        data = gzip.compress(tar, mtime=0) if compress else tar
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        descriptors.append({"mediaType": media, "digest": _blob(blobs, data), "size": len(data)})
    settings: dict[str, Any] = {"Env": env or ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]}
    settings.update(config or {})
    image_config = {
        "architecture": architecture,
        "os": "linux",
        "config": settings,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(image_config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _blob(blobs, config_bytes),
            "size": len(config_bytes),
        },
        "layers": descriptors,
    }
    manifest_bytes = json.dumps(manifest).encode()
    digest = _blob(blobs, manifest_bytes)
    index_path = dest / "index.json"
    index = (
        json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return digest


def layout_blobs(layout: Path, digest: str) -> tuple[dict[str, Any], list[str]]:
    """The config and the layer blob digests of the image `digest` in `layout`."""
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    return config, [layer["digest"] for layer in manifest["layers"]]


def skopeo(*args: str, policy_dir: Path) -> subprocess.CompletedProcess[str]:
    policy = policy_dir / "policy.json"
    policy.write_text(SKOPEO_POLICY)
    return subprocess.run(
        ["skopeo", "--policy", str(policy), *args], capture_output=True, text=True, timeout=120, check=True
    )


def push(layout: Path, tag: str, registry: str, repository: str, *, creds: str | None = None) -> str:
    """Push the image `tag` of `layout` to `registry` as `repository:tag`; its reference."""
    reference = f"docker://{registry}/{repository}:{tag}"
    auth = ["--dest-creds", creds] if creds else []
    skopeo("copy", "--dest-tls-verify=false", *auth, f"oci:{layout}:{tag}", reference, policy_dir=layout)
    return reference


def write_index(layout: Path, tag: str, images: dict[str, str]) -> str:
    """Tag `tag` in `layout` an image index of `images` (architecture: manifest digest); its digest."""
    blobs = layout / "blobs" / "sha256"
    entries = []
    for architecture, digest in images.items():
        size = (blobs / digest.removeprefix("sha256:")).stat().st_size
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"architecture": architecture, "os": "linux"},
            }
        )
    data = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    ).encode()
    digest = _blob(blobs, data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": len(data),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(index))
    return digest
