from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dgr import layer, tarsink
from dgr.aci import image_manifest, manifest_bytes, read_aci_manifest, write_aci
from dgr.errors import BuildError, DgrError
from dgr.manifest import Manifest
from dgr.manifest_reader import parse_manifest
from dgr.names import ImageName
from dgr.process import run

DATE = "2024-05-01T12:00:00+02:00"
FULL = """\
name: example.com/aci-full:1.2-3
aci:
  annotations:
    - {name: authors, value: Someone}
    - {name: build-date, value: replaced}
  app:
    exec: [/bin/app, --flag]
    user: www
    group: "33"
    supplementaryGIDs: [4, 5]
    workingDirectory: /srv
    environment:
      - {name: MODE, value: prod}
    mountPoints:
      - {name: data, path: /data}
      - {name: conf, path: /etc/app, readOnly: true}
    ports:
      - {name: http, port: 8080}
      - {name: dns, port: 53, protocol: udp, count: 2}
    isolators:
      - {name: resource/memory, value: {limit: 512Mi}}
"""


def manifest(text: str = "name: example.com/aci-min\n") -> Manifest:
    return parse_manifest(text, Path("/project/aci-manifest.yml"))


def convert(m: Manifest, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "version": m.name.version,
        "dependencies": [],
        "dgr_version": "0.1.0",
        "build_date": DATE,
    }
    options.update(kwargs)
    return image_manifest(m, **options)


def test_minimal_manifest() -> None:
    assert convert(manifest()) == {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/aci-min",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "app": {
            "exec": ["/dgr/bin/busybox", "sh"],
            "eventHandlers": [{"name": "pre-start", "exec": ["/dgr/bin/prestart"]}],
            "user": "0",
            "group": "0",
        },
        "annotations": [{"name": "dgr-version", "value": "0.1.0"}, {"name": "build-date", "value": DATE}],
    }


def test_full_manifest_in_appc_field_order() -> None:
    result = convert(
        manifest(FULL),
        dependencies=[
            (ImageName("example.com/base", "1.0"), "sha512-" + "a" * 128),
            (ImageName("example.com/tools", ""), None),
        ],
    )
    assert list(result) == ["acKind", "acVersion", "name", "labels", "app", "annotations", "dependencies"]
    assert result["labels"][0] == {"name": "version", "value": "1.2-3"}
    app = result["app"]
    assert list(app) == [
        "exec",
        "eventHandlers",
        "user",
        "group",
        "supplementaryGIDs",
        "workingDirectory",
        "environment",
        "mountPoints",
        "ports",
        "isolators",
    ]
    assert app["supplementaryGIDs"] == [4, 5]
    assert app["mountPoints"] == [
        {"name": "data", "path": "/data"},
        {"name": "conf", "path": "/etc/app", "readOnly": True},
    ]
    assert app["ports"][1] == {
        "name": "dns",
        "protocol": "udp",
        "port": 53,
        "count": 2,
        "socketActivated": False,
    }
    assert app["isolators"] == [{"name": "resource/memory", "value": {"limit": "512Mi"}}]
    assert result["annotations"] == [
        {"name": "authors", "value": "Someone"},
        {"name": "build-date", "value": DATE},
        {"name": "dgr-version", "value": "0.1.0"},
    ]
    assert result["dependencies"] == [
        {
            "imageName": "example.com/base",
            "imageID": "sha512-" + "a" * 128,
            "labels": [{"name": "version", "value": "1.0"}],
        },
        {"imageName": "example.com/tools"},
    ]


def test_build_date_must_be_rfc3339_with_t() -> None:
    with pytest.raises(BuildError, match="RFC3339"):
        convert(manifest(), build_date="2024-05-01 12:00:00+02:00")


def test_dependency_ids_must_be_appc_ids() -> None:
    with pytest.raises(BuildError, match="sha512"):
        convert(manifest(), dependencies=[(ImageName("example.com/base", "1"), "sha256:abc")])


def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "layer"
    (root / "bin").mkdir(parents=True)
    (root / "bin/hello").write_text("#!/bin/sh\necho hello\n")
    os.chmod(root / "bin/hello", 0o755)
    os.link(root / "bin/hello", root / "bin/hello-hard")
    (root / "bin/hi").symlink_to("hello")
    return root


def image(
    tmp_path: Path, source: Path | list[Path] | None = None, name: str = "image.aci"
) -> tuple[Path, str]:
    dest = tmp_path / "target" / name
    data = convert(manifest("name: example.com/aci-test:1.0\n"))
    return dest, write_aci(source if source is not None else rootfs(tmp_path), data, dest)


def test_aci_layout_manifest_first_then_rootfs(tmp_path: Path) -> None:
    dest, _ = image(tmp_path)
    with tarfile.open(dest) as archive:
        entries = archive.getmembers()
    assert [m.name for m in entries[:2]] == ["manifest", "rootfs"]
    assert entries[0].isreg() and entries[0].mode == 0o644 and entries[1].isdir()
    assert {m.name.split("/")[0] for m in entries} == {"manifest", "rootfs"}
    names = [m.name for m in entries]
    assert len(names) == len(set(names))
    link = next(m for m in entries if m.name == "rootfs/bin/hello-hard")
    assert link.islnk() and link.linkname == "rootfs/bin/hello"


def test_image_id_is_sha512_of_the_file_and_deterministic(tmp_path: Path) -> None:
    dest, image_id = image(tmp_path)
    assert image_id == "sha512-" + hashlib.sha512(dest.read_bytes()).hexdigest()
    again, second = image(tmp_path, tmp_path / "layer", name="again.aci")
    assert second == image_id
    assert again.read_bytes() == dest.read_bytes()


def test_read_aci_manifest(tmp_path: Path) -> None:
    dest, _ = image(tmp_path)
    assert read_aci_manifest(dest) == convert(manifest("name: example.com/aci-test:1.0\n"))
    assert dest.read_bytes().startswith(b"manifest")
    broken = tmp_path / "broken.aci"
    broken.write_bytes(b"not a tar")
    with pytest.raises(DgrError, match="cannot read the ACI manifest"):
        read_aci_manifest(broken)


def test_manifest_bytes_are_kept_as_given(tmp_path: Path) -> None:
    data = manifest_bytes(convert(manifest()))
    dest = tmp_path / "x.aci"
    write_aci(rootfs(tmp_path), data, dest)
    with tarfile.open(dest) as archive:
        handle = archive.extractfile("manifest")
        assert handle is not None and handle.read() == data
    assert data.decode().startswith('{\n  "acKind": "ImageManifest"')


def test_whiteouts_are_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = rootfs(tmp_path)
    os.mknod(root / "bin/deleted", stat.S_IFCHR, 0)
    with caplog.at_level(logging.WARNING, logger="dgr"):
        dest, _ = image(tmp_path, root)
    with tarfile.open(dest) as archive:
        assert "rootfs/bin/deleted" not in archive.getnames()
        assert not any(".wh." in name for name in archive.getnames())
    assert "/bin/deleted" in caplog.text and "appc has no whiteouts" in caplog.text


def test_several_layer_directories_are_merged(tmp_path: Path) -> None:
    internals = tmp_path / "internals"
    (internals / "dgr/bin").mkdir(parents=True)
    (internals / "dgr/bin/prestart").write_text("#!/bin/sh\n")
    dest, _ = image(tmp_path, [internals, rootfs(tmp_path)])
    with tarfile.open(dest) as archive:
        names = archive.getnames()
    assert "rootfs/dgr/bin/prestart" in names and "rootfs/bin/hello" in names


def test_failure_mid_write_keeps_the_previous_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest, _ = image(tmp_path)
    previous = dest.read_bytes()
    root = tmp_path / "layer"
    (root / "big").write_bytes(os.urandom(3 * tarsink.CHUNK))
    real = layer.TarWriter._add_regular
    calls = []

    def failing(self: layer.TarWriter, path: str, arcname: str, st: os.stat_result) -> None:
        calls.append(arcname)
        if arcname.endswith("bin/hello"):
            raise OSError(5, "Input/output error")
        real(self, path, arcname, st)

    monkeypatch.setattr(layer.TarWriter, "_add_regular", failing)
    with pytest.raises(OSError):
        image(tmp_path, root)
    assert calls == ["rootfs/big", "rootfs/bin/hello"]  # the big file was written before the failure
    assert dest.read_bytes() == previous
    assert os.listdir(dest.parent) == ["image.aci"]


@pytest.mark.skipif(shutil.which("actool") is None, reason="actool (appc-spec) not installed")
def test_actool_validates_the_image(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    os.mkfifo(root / "fifo")
    (root / "etc").mkdir()
    os.setxattr(root / "etc", "user.x", b"y")
    dest = tmp_path / "full.aci"
    write_aci(
        root,
        convert(
            manifest(FULL), dependencies=[(ImageName("example.com/base", "1.0"), "sha512-" + "b" * 128)]
        ),
        dest,
    )
    assert run(["actool", "validate", dest]).output == ""
    assert "valid app container image" in run(["actool", "--debug", "validate", dest]).output
    printed = run(["actool", "cat-manifest", dest]).output
    assert json.loads(printed)["name"] == "example.com/aci-full"
