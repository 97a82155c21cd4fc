from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dgr.aci import write_aci
from dgr.errors import BuildError
from dgr.manifest import Manifest
from dgr.manifest_reader import parse_manifest
from dgr.oci import (
    REF_NAME,
    BlobCache,
    LayerBlob,
    LayerSource,
    export_image,
    read_oci_layout,
    write_oci_layout,
)
from dgr.ociconfig import DEFAULT_PATH, image_config

CREATED = "2024-05-01T12:00:00Z"
APP = """\
name: example.com/aci-web:2.0
aci:
  annotations:
    - {name: authors, value: Someone}
  app:
    exec: [/bin/web, --port, "8080"]
    user: www
    group: www
    workingDirectory: /srv
    environment:
      - {name: MODE, value: prod}
    mountPoints:
      - {name: data, path: /data}
    ports:
      - {name: http, port: 8080}
      - {name: dns, port: 53, protocol: udp, count: 2}
"""


def manifest(text: str = APP) -> Manifest:
    return parse_manifest(text, Path("/project/aci-manifest.yml"))


def config(m: Manifest | None = None, diff_ids: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    return image_config(
        m or manifest(),
        version="2.0",
        diff_ids=diff_ids or ["sha256:" + "1" * 64],
        created=CREATED,
        **kwargs,
    )


def test_image_config() -> None:
    result = config(diff_ids=["sha256:" + "1" * 64, "sha256:" + "2" * 64])
    assert (result["architecture"], result["os"], result["created"]) == ("amd64", "linux", CREATED)
    cfg = result["config"]
    assert cfg["Entrypoint"] == ["/dgr/bin/start"]
    assert cfg["Cmd"] == ["/bin/web", "--port", "8080"]
    assert cfg["Env"] == [f"PATH={DEFAULT_PATH}", "MODE=prod"]
    assert cfg["User"] == "www:www"
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}, "54/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == "example.com/aci-web"
    assert labels["org.opencontainers.image.version"] == "2.0"
    assert labels["org.opencontainers.image.authors"] == "Someone"
    assert result["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]}
    assert [h["created_by"] for h in result["history"]] == [
        "dgr: dependency layer",
        "dgr build example.com/aci-web:2.0",
    ]


def test_minimal_config_defaults() -> None:
    cfg = config(
        manifest("name: example.com/aci-min\naci:\n  app:\n    environment: [{name: PATH, value: /x}]\n")
    )
    assert cfg["config"]["User"] == "0:0"
    assert cfg["config"]["Env"] == ["PATH=/x"]
    assert "WorkingDir" not in cfg["config"] and "ExposedPorts" not in cfg["config"]


def test_a_file_owner_user_has_no_oci_form() -> None:
    with pytest.raises(BuildError, match="aci.app.user"):
        config(manifest("name: example.com/a\naci:\n  app:\n    user: /bin/app\n"))


def tree(root: Path, content: str = "hello") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/greeting").write_text(content)
    return root


def check_blob(blob: LayerBlob) -> None:
    data = blob.path.read_bytes()
    assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blob.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert blob.size == len(data)
    assert blob.path.name == blob.hex


def test_layer_from_directory_is_stored_once_by_digest(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    first = cache.layer_from_directory(tree(tmp_path / "a"))
    check_blob(first)
    assert cache.layer_from_directory(tmp_path / "a") == first
    assert os.listdir(cache.blobs) == [first.hex]


def test_a_key_finds_the_blob_without_reading_the_source(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    blob = cache.layer_from_directory(tree(tmp_path / "a"), key="internals:1")
    (tmp_path / "a/etc/greeting").write_text("changed")
    assert cache.layer_from_directory(tmp_path / "a", key="internals:1") == blob
    assert cache.lookup("internals:1") == blob
    assert cache.lookup("other") is None
    blob.path.chmod(0o644)
    blob.path.write_bytes(b"truncated")
    assert cache.lookup("internals:1") is None


def test_layer_from_tar_and_from_aci(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    source = tree(tmp_path / "a")
    os.link(source / "etc/greeting", source / "etc/again")
    from_dir = cache.layer_from_directory(source)
    raw = tmp_path / "layer.tar"
    raw.write_bytes(gzip.decompress(from_dir.path.read_bytes()))
    from_tar = cache.layer_from_tar(raw)
    check_blob(from_tar)
    assert from_tar.diff_id == from_dir.diff_id
    aci = tmp_path / "x.aci"
    write_aci(source, {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/x"}, aci)
    from_aci = cache.layer_from_aci(aci)
    check_blob(from_aci)
    assert from_aci.diff_id == from_dir.diff_id


def layout_json(layout: Path, name: str) -> Any:
    return json.loads((layout / name).read_text())


def blob_json(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())


def test_write_oci_layout(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    lower = cache.layer_from_directory(tree(tmp_path / "lower", "lower"))
    upper = cache.layer_from_directory(tree(tmp_path / "upper", "upper"))
    dest = tmp_path / "target/oci"
    digest = write_oci_layout(dest, [lower, upper], config(diff_ids=[lower.diff_id, upper.diff_id]), "2.0")
    assert layout_json(dest, "oci-layout") == {"imageLayoutVersion": "1.0.0"}
    index = layout_json(dest, "index.json")
    assert index["manifests"][0]["digest"] == digest
    assert index["manifests"][0]["annotations"] == {REF_NAME: "2.0"}
    image = blob_json(dest, digest)
    assert [layer["digest"] for layer in image["layers"]] == [lower.digest, upper.digest]
    assert blob_json(dest, image["config"]["digest"])["rootfs"]["diff_ids"] == [lower.diff_id, upper.diff_id]
    for blob in (lower, upper):
        assert (
            os.stat(dest / "blobs/sha256" / blob.hex).st_ino == os.stat(blob.path).st_ino
        )  # linked, not copied
    layers, read_config = read_oci_layout(dest, "2.0")
    assert [(b.digest, b.diff_id, b.size) for b in layers] == [
        (b.digest, b.diff_id, b.size) for b in (lower, upper)
    ]
    assert read_config["config"]["Cmd"] == ["/bin/web", "--port", "8080"]
    assert os.listdir(dest.parent) == ["oci"]


def test_layout_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    first = cache.layer_from_directory(tree(tmp_path / "a", "first"))
    dest = tmp_path / "oci"
    write_oci_layout(dest, [first], config(diff_ids=[first.diff_id]), "1")
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    missing = LayerBlob(tmp_path / "nowhere", "sha256:" + "0" * 64, "sha256:" + "1" * 64, 10)
    with pytest.raises(BuildError, match="missing"):
        write_oci_layout(dest, [first, missing], config(diff_ids=[first.diff_id, missing.diff_id]), "2")
    with pytest.raises(BuildError, match="diff_ids"):
        write_oci_layout(dest, [first], config(diff_ids=[missing.diff_id]), "2")
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["a", "cache", "oci"]
    second = cache.layer_from_directory(tree(tmp_path / "b", "second"))
    write_oci_layout(dest, [second], config(diff_ids=[second.diff_id]), "2")
    assert read_oci_layout(dest)[0][0].digest == second.digest
    assert not (dest / "blobs/sha256" / first.hex).exists()
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "cache", "oci"]


def test_previous_layout_blobs_are_reused(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    blob = cache.layer_from_directory(tree(tmp_path / "a"))
    dest = tmp_path / "oci"
    write_oci_layout(dest, [blob], config(diff_ids=[blob.diff_id]), "1")
    inode = os.stat(dest / "blobs/sha256" / blob.hex).st_ino
    blob.path.chmod(0o644)
    blob.path.unlink()  # the cache was cleaned: the previous layout still has the blob
    write_oci_layout(dest, [blob], config(diff_ids=[blob.diff_id]), "1")
    assert os.stat(dest / "blobs/sha256" / blob.hex).st_ino == inode


def test_export_image_mixes_directories_and_ready_blobs(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    dependency = cache.layer_from_directory(tree(tmp_path / "dep", "dep"))
    internals = tree(tmp_path / "internals", "internals")
    own = tree(tmp_path / "own", "own")
    dest = tmp_path / "oci"
    export_image(
        dest,
        manifest(),
        version="2.0",
        created=CREATED,
        layers=[dependency, LayerSource(internals, key="internals:1"), LayerSource(own)],
        cache=cache,
    )
    layers, cfg = read_oci_layout(dest, "2.0")
    assert layers[0].digest == dependency.digest
    assert layers[1].digest == cache.lookup("internals:1").digest  # type: ignore[union-attr]
    assert len(cfg["rootfs"]["diff_ids"]) == 3
    with tarfile.open(layers[2].path) as archive:
        handle = archive.extractfile("etc/greeting")
        assert handle is not None and handle.read() == b"own"
