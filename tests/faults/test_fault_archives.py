"""Hostile images: a dependency fetched by discovery, or an OCI layer, that tries to escape.

The project depends on `example.test/hostile:1`, which a discovery server on 127.0.0.1 serves
(tests/support/discovery.py). Each case publishes a hostile ACI; the build must fail with one
message naming the image and the entry, store nothing (no image, no `.add-*`, no `fetch-*`
left), write nothing outside the target and the store — the escapes aim at a folder of the
test — and build once the server holds a good image. OCI layers (whiteouts) are applied with
the library's own extraction, with the same promises.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dgr.errors import BuildError
from dgr.extract import extract_layer
from tests.faults.harness import BASE_MANIFEST, Case, Env, Result, dgr
from tests.support.discovery import (
    DiscoveryServer,
    aci,
    aci_with_sparse_file,
    discovery_server,
    entry,
    gzip_bomb,
    image_path,
    manifest,
)

pytestmark = pytest.mark.integration

HOSTILE = "example.test/hostile"
DEPENDS = {"aci-manifest.yml": BASE_MANIFEST + f"aci:\n  dependencies: [{HOSTILE}:1]\n"}
DIR = tarfile.DIRTYPE


def server_of(env: Env) -> DiscoveryServer:
    found = env.extra["server"]
    assert isinstance(found, DiscoveryServer)
    return found


def serve(make: Callable[[Env], bytes]) -> Callable[[Env], None]:
    """A case's setup: publish `make(env)` as example.test/hostile:1."""

    def setup(env: Env) -> None:
        server_of(env).publish(HOSTILE, "1", make(env))

    return setup


def serve_good(env: Env) -> None:
    """The fix: the server holds a good image."""
    server = server_of(env)
    server.status.clear()
    server.publish(HOSTILE, "1", aci(HOSTILE, "1"))


def outside(env: Env) -> str:
    """A folder of the test, outside the store: where the escapes aim."""
    path = env.root / "outside"
    path.mkdir(exist_ok=True)
    return str(path)


@functools.cache
def bomb() -> bytes:
    return gzip_bomb(HOSTILE, "1", 300 << 20)


def hostile(id_: str, message: str, make: Callable[[Env], bytes], config: str = "") -> Case:
    return Case(
        id_,
        message if message.startswith("^") else rf"^{HOSTILE}:1 from http://\S+:? .*{message}",
        DEPENDS,
        config=config,
        setup=serve(make),
        fix=serve_good,
    )


CASES = [
    hostile(
        "dot-dot",
        r"refusing tar entry 'rootfs/../../dgr-escaped': it contains '\.\.'",
        lambda env: aci(HOSTILE, "1", [entry("rootfs/../../dgr-escaped", b"x")]),
    ),
    hostile(
        "absolute-path",
        r"refusing tar entry '/.*/dgr-escaped': it is an absolute path",
        lambda env: aci(HOSTILE, "1", [entry(f"{outside(env)}/dgr-escaped", b"x")]),
    ),
    hostile(
        "write-through-symlink",
        r"refusing tar entry 'rootfs/evil/dgr-escaped': evil is a symlink to '/.*/outside', outside",
        lambda env: aci(
            HOSTILE,
            "1",
            [
                entry("rootfs/evil", type=tarfile.SYMTYPE, linkname=outside(env)),
                entry("rootfs/evil/dgr-escaped", b"x"),
            ],
        ),
    ),
    hostile(
        "hard-link-out",
        r"refusing tar entry 'rootfs/h': its link target '/etc/passwd' is an absolute path",
        lambda env: aci(HOSTILE, "1", [entry("rootfs/h", type=tarfile.LNKTYPE, linkname="/etc/passwd")]),
    ),
    hostile(
        "hard-link-up",
        r"refusing tar entry 'rootfs/h': its link target 'rootfs/../../x' contains '\.\.'",
        lambda env: aci(HOSTILE, "1", [entry("rootfs/h", type=tarfile.LNKTYPE, linkname="rootfs/../../x")]),
    ),
    hostile(
        "sparse-bomb",
        r"entry 'rootfs/big': the archive \(4.0 KiB\) expands beyond 64.0 MiB.*key: limits.expansion",
        lambda env: aci_with_sparse_file(HOSTILE, "1", "rootfs/big", 4 << 30),
    ),
    hostile(
        "gzip-bomb",
        r"refusing tar entry 'rootfs/zeros': the archive \(1.3 MiB\) expands beyond .*100 times its size",
        lambda env: bomb(),
    ),
    hostile(
        "too-many-files",
        r"refusing tar entry 'rootfs/f7': the archive holds more than 8 entries \(key: limits.files\)",
        lambda env: aci(HOSTILE, "1", [entry(f"rootfs/f{i}", b"") for i in range(10)]),
        config="limits: {files: 8}\n",
    ),
    hostile(
        "image-size",
        r"refusing tar entry 'rootfs/big': the archive expands beyond 1.0 KiB \(key: limits.imageSize\)",
        lambda env: aci(HOSTILE, "1", [entry("rootfs/big", bytes(4096))]),
        config="limits: {imageSize: 1KiB}\n",
    ),
    hostile(
        "bad-capability-xattr",
        r"refusing tar entry 'rootfs/cap': its xattr security.capability cannot be set: Invalid argument",
        lambda env: aci(
            HOSTILE,
            "1",
            [entry("rootfs/cap", b"x", pax_headers={"SCHILY.xattr.security.capability": "\x01\x02"})],
        ),
    ),
    hostile(
        "lying-manifest",
        r"^http://.*hostile-1-.*aci holds image 'example.test/other', not 'example.test/hostile'",
        lambda env: aci(HOSTILE, "1", image_manifest=manifest("example.test/other", "1")),
    ),
    hostile(
        "lying-version",
        r"^http://.*hostile-1-.*aci holds example.test/hostile with version=2, not version=1",
        lambda env: aci(HOSTILE, "1", image_manifest=manifest(HOSTILE, "2")),
    ),
    hostile(
        "not-an-archive",
        r"is not a valid ACI: cannot read the ACI manifest",
        lambda env: b"<html>not an image</html>\n" * 40,
    ),
    hostile(
        "no-manifest",
        r"is not a valid ACI: no manifest in this ACI",
        lambda env: aci_without_manifest(),
    ),
    hostile(
        "truncated",
        r"corrupt layer: unexpected end of data",
        lambda env: aci(HOSTILE, "1", [entry("rootfs/data", os.urandom(20000))])[:12000],
    ),
    hostile(
        "truncated-gzip",
        r"is corrupt: Compressed file ended before the end-of-stream marker",
        lambda env: gzip.compress(aci(HOSTILE, "1", [entry("rootfs/data", os.urandom(20000))]))[:15000],
    ),
    Case(
        "server-error",
        rf"^downloading {HOSTILE}:1: HTTP 500 from http://",
        DEPENDS,
        setup=lambda env: server_of(env).status.update({image_path(HOSTILE, "1"): 500}),
        fix=serve_good,
    ),
    Case(
        "pinned-dependency-differs",
        r"^dependency example.test/base:1 has image ID .*, but example.test/hostile pins",
        DEPENDS,
        setup=lambda env: publish_pinned(server_of(env)),
        fix=serve_good,
    ),
]


def aci_without_manifest() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info, _ = entry("rootfs", type=DIR, mode=0o755)
        tar.addfile(info)
    return out.getvalue()


def publish_pinned(server: DiscoveryServer) -> None:
    """hostile:1 pins base:1 by an image ID that the server's base:1 does not have."""
    server.publish("example.test/base", "1", aci("example.test/base", "1"))
    pin = {
        "imageName": "example.test/base",
        "imageID": "sha512-" + "0" * 64,
        "labels": [{"name": "version", "value": "1"}],
    }
    server.publish(HOSTILE, "1", aci(HOSTILE, "1", image_manifest=manifest(HOSTILE, "1", [pin])))


@pytest.fixture
def server(fault_env: Env) -> Iterator[DiscoveryServer]:
    with discovery_server() as found:
        fault_env.extra["server"] = found
        fault_env.extra["base_config"] = str(fault_env.extra["base_config"]) + found.config()
        yield found


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_image(
    case: Case, fault_env: Env, server: DiscoveryServer, run_case: Callable[[Case], Result]
) -> None:
    run_case(case)
    assert not list(fault_env.root.rglob("dgr-escaped")), "an entry escaped"


# --- OCI layers, applied over a lower layer as an OCI image's are ----------------------------


def layer(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


LAYERS = [
    (
        "whiteout-dot-dot",
        [entry("etc/.wh...", b"")],
        r"refusing tar entry 'etc/.wh...': it is a malformed whiteout",
    ),
    (
        "whiteout-through-symlink",
        [entry("evil", type=tarfile.SYMTYPE, linkname="OUTSIDE"), entry("evil/.wh.victim", b"")],
        r"refusing tar entry 'evil/.wh.victim': evil is a symlink to '.*outside', outside the destination",
    ),
    (
        "opaque-through-symlink",
        [entry("evil", type=tarfile.SYMTYPE, linkname="OUTSIDE"), entry("evil/.wh..wh..opq", b"")],
        r"refusing tar entry 'evil/.wh..wh..opq': evil is a symlink to '.*outside', outside the destination",
    ),
    (
        "symlink-then-file",
        [entry("lnk", type=tarfile.SYMTYPE, linkname="../../outside"), entry("lnk/victim", b"x")],
        r"refusing tar entry 'lnk/victim': lnk is a symlink to '../../outside', outside the destination",
    ),
    (
        "absolute",
        [entry("/outside/victim", b"x")],
        r"refusing tar entry '/outside/victim': it is an absolute path",
    ),
    (
        "fifo-then-file-in-it",
        [entry("p", type=tarfile.FIFOTYPE), entry("p/x", b"x")],
        r"p is not a directory",
    ),
    ("unknown-type", [entry("odd", type=b"Z")], r"refusing tar entry 'odd': unsupported entry type"),
]


@pytest.mark.parametrize(
    ("entries", "message"), [(e, m) for _, e, m in LAYERS], ids=[i for i, _, _ in LAYERS]
)
def test_hostile_oci_layer(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    rootfs = tmp_path / "rootfs"  # the lower layers, already applied
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root\n")
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    for info, _ in entries:
        if info.linkname == "OUTSIDE":
            info.linkname = str(victim.parent)
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(layer(entries))
    with pytest.raises(BuildError, match=message) as raised:
        extract_layer(path, rootfs)
    assert raised.value.path == str(path)  # the layer is named
    assert victim.read_text() == "keep me\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    assert (rootfs / "etc" / "passwd").read_text() == "root\n"


def test_device_nodes_are_dropped_with_a_warning(
    fault_env: Env, server: DiscoveryServer, capfd: pytest.CaptureFixture[str]
) -> None:
    devices = [
        entry("rootfs/dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
        entry("rootfs/dev/mem", type=tarfile.CHRTYPE, devmajor=1, devminor=1),
    ]
    server.publish(HOSTILE, "1", aci(HOSTILE, "1", [entry("rootfs/dev", type=DIR, mode=0o755), *devices]))
    fault_env.write(DEPENDS)
    fault_env.config("")
    result = dgr(fault_env, ["build"], capfd)
    assert result.code == 0, result.err
    assert "dropped device nodes of 2 entries: rootfs/dev/sda, rootfs/dev/mem" in result.err
    layer = next((fault_env.store / "images").glob("sha512-*/layer"))
    assert sorted(p.name for p in (layer / "dev").iterdir()) == []


def test_a_discovery_page_answering_503_is_asked_again(
    fault_env: Env, server: DiscoveryServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.publish(HOSTILE, "1", aci(HOSTILE, "1"))
    server.page_failures = 1
    fault_env.write(DEPENDS)
    fault_env.extra["base_config"] = str(fault_env.extra["base_config"]).replace("retries: 0", "retries: 1")
    fault_env.config("")
    result = dgr(fault_env, ["build"], capfd)
    assert result.code == 0, result.err
    assert "HTTP 503; trying again in 1s (1/1)" in result.err
