"""OCI references in manifests; OCI layers extracted as overlay lower directories; what an
image inherits from an OCI base's config."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from dgr.errors import BuildError, ManifestError
from dgr.extract import WhiteoutMode, extract_layer
from dgr.manifest import App, NameValue
from dgr.manifest_reader import parse_manifest
from dgr.names import ImageName
from dgr.ociconfig import app_of_config, inherit_app
from dgr.reference import OciReference, parse_dependency, parse_reference
from tests.support.ociimages import Entry, layer_tar

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "location", "tag", "digest", "registry"),
    [
        (
            "docker://127.0.0.1:5000/lib/busybox:1.36",
            "127.0.0.1:5000/lib/busybox",
            "1.36",
            "",
            "127.0.0.1:5000",
        ),
        ("docker://registry.example/busybox", "registry.example/busybox", "latest", "", "registry.example"),
        (f"docker://localhost/x@sha256:{HEX}", "localhost/x", "", f"sha256:{HEX}", "localhost"),
        ("docker://debian:bookworm", "debian", "bookworm", "", "docker.io"),
        ("docker://library/debian", "library/debian", "latest", "", "docker.io"),
    ],
)
def test_docker_references(text: str, location: str, tag: str, digest: str, registry: str) -> None:
    ref = parse_reference(text)
    assert ref == OciReference("docker", location, tag, digest)
    assert ref.registry == registry
    assert str(ref) == text if text.count(":") > 1 or "@" in text else str(ref) == f"{text}:latest"


def test_local_references_are_relative_to_the_manifest_folder(tmp_path: Path) -> None:
    ref = parse_reference("oci:../base:1", source=tmp_path / "app" / "aci-manifest.yml")
    assert (ref.transport, ref.location, ref.tag) == ("oci", "../base", "1")
    assert ref.path() == tmp_path / "base"
    assert ref.source() == f"oci:{tmp_path / 'base'}:1"
    assert str(ref) == "oci:../base:1"
    absolute = parse_reference("oci-archive:/srv/images/base.tar")
    assert absolute.path() == Path("/srv/images/base.tar") and absolute.tag == ""
    assert absolute.pinned(f"sha256:{HEX}") == f"oci-archive:/srv/images/base.tar@sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("docker://Registry.example/UPPER:1", "lower-case"),
        ("docker://registry.example/x:1@sha256:" + HEX, "a tag and a digest"),
        ("docker://registry.example/x@sha256:abc", "not a sha256 digest"),
        ("docker://registry.example/x:bad/tag", "lower-case"),
        ("docker://registry.example/x:-tag", "not a valid tag"),
        ("oci:", "no path"),
        ("oci:dir:bad tag", "not a valid tag"),
        ("containers-storage:x", "transports are"),
    ],
)
def test_bad_references_name_the_key(text: str, why: str) -> None:
    with pytest.raises(ManifestError, match=why) as failed:
        parse_reference(text, source="aci-manifest.yml", key="aci.dependencies[0]")
    assert failed.value.key == "aci.dependencies[0]" and text in failed.value.message


def test_manifest_dependencies_mix_appc_names_and_oci_references(tmp_path: Path) -> None:
    manifest = parse_manifest(
        "name: example.com/app:1\n"
        "builder:\n  dependencies: ['oci-archive:tools.tar']\n"
        "tester:\n  aci:\n    dependencies: ['docker://registry.example/bats:1']\n"
        "aci:\n  dependencies: ['docker://registry.example/debian:12', example.com/base:1]\n",
        tmp_path / "aci-manifest.yml",
    )
    first, second = manifest.aci.dependencies
    assert isinstance(first, OciReference) and second == ImageName("example.com/base", "1")
    assert isinstance(manifest.builder.dependencies[0], OciReference)
    assert isinstance(manifest.tester.dependencies[0], OciReference)
    assert parse_dependency("example.com/x") == ImageName("example.com/x")


# --- extraction as overlay lower directories ------------------------------------------------


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    tar = layer_tar(
        [
            Entry("etc", "dir", mode=0o755),
            Entry("etc/.wh.gone"),
            Entry("var", "dir", mode=0o755),
            Entry("var/cache", "dir", mode=0o700),
            Entry("var/cache/.wh..wh..opq"),
            Entry("var/cache/new", data=b"n"),
            Entry("srv/implicit/file", data=b"f"),
        ]
    )
    dest = tmp_path / "layer"
    extract_layer(io.BytesIO(tar), dest, whiteouts=WhiteoutMode.OVERLAY, refuse_devices=True)
    gone = os.lstat(dest / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.lstat(dest / "var/cache").st_mode) == 0o700
    assert (dest / "var/cache/new").read_bytes() == b"n"
    assert not list(dest.rglob(".wh.*"))
    assert (dest / "srv/implicit/file").read_bytes() == b"f"  # parents the tar does not list


def test_devices_are_refused_when_asked_and_overlay_xattrs_never_come_from_a_tar(tmp_path: Path) -> None:
    devices = layer_tar([Entry("dev", "dir", mode=0o755), Entry("dev/null", "char", device=(1, 3))])
    with pytest.raises(BuildError, match="dev/null.*device node"):
        extract_layer(
            io.BytesIO(devices), tmp_path / "a", whiteouts=WhiteoutMode.OVERLAY, refuse_devices=True
        )
    extract_layer(io.BytesIO(devices), tmp_path / "b", whiteouts=WhiteoutMode.OVERLAY)  # dropped
    assert not (tmp_path / "b/dev/null").exists()
    redirect = layer_tar([Entry("d", "dir", mode=0o755, xattrs={"trusted.overlay.redirect": "/etc"})])
    extract_layer(io.BytesIO(redirect), tmp_path / "c", whiteouts=WhiteoutMode.OVERLAY)
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "c/d")


def test_wh_names_are_plain_files_without_whiteouts(tmp_path: Path) -> None:
    tar = layer_tar([Entry(".wh.plain", data=b"p")])
    extract_layer(io.BytesIO(tar), tmp_path / "x", whiteouts=WhiteoutMode.NONE)
    assert (tmp_path / "x/.wh.plain").read_bytes() == b"p"


# --- inheritance from the base's config ----------------------------------------------------------

BASE = {
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "SHARED=base"],
        "WorkingDir": "/srv",
        "User": "web",
        "Entrypoint": ["/entry"],
        "Cmd": ["serve", "--port=80"],
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "bogus": {}},
    }
}


def passwd_layers(tmp_path: Path) -> list[Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:44::/srv:/bin/sh\n")
    upper.mkdir()
    return [lower, upper]


def test_an_app_inherits_what_its_manifest_does_not_set(tmp_path: Path) -> None:
    app = App(environment=(NameValue("SHARED", "mine"), NameValue("OWN", "1")))
    layers = passwd_layers(tmp_path)
    inherited = inherit_app(app, BASE, layers)
    assert [(e.name, e.value) for e in inherited.environment] == [
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("SHARED", "mine"),
        ("OWN", "1"),
    ]
    assert (inherited.working_directory, inherited.user, inherited.group) == ("/srv", "web", "44")
    assert inherit_app(inherited, BASE, layers) == inherited  # applied twice: the same


def test_what_the_manifest_sets_wins(tmp_path: Path) -> None:
    app = App(user="0", group="0", working_directory="/app", given=("user", "workingDirectory"))
    inherited = inherit_app(app, {"config": {**BASE["config"], "User": "1000:1000"}}, [])
    assert (inherited.user, inherited.group, inherited.working_directory) == ("0", "0", "/app")
    no_passwd = inherit_app(App(), BASE, [tmp_path])
    assert (no_passwd.user, no_passwd.group) == ("web", "0")


def test_a_pod_app_takes_the_command_and_ports_of_an_oci_image(tmp_path: Path) -> None:
    app = app_of_config(BASE, passwd_layers(tmp_path))
    assert app.exec == ("/entry", "serve", "--port=80")
    assert [(p.name, p.port, p.protocol) for p in app.ports] == [
        ("udp-53", 53, "udp"),
        ("tcp-80", 80, "tcp"),
    ]
    assert app.user == "web" and app.working_directory == "/srv"
    assert app_of_config({}, []).exec == App().exec


def test_the_keys_a_manifest_sets_print_the_same_in_every_process(tmp_path: Path) -> None:
    # The manifest's repr is an input of the build key: a set there would change it from one
    # interpreter to the next (string hashes are salted), and rebuild images for nothing.
    import subprocess
    import sys

    (tmp_path / "aci-manifest.yml").write_text(
        "name: example.com/app:1\naci:\n  app:\n    exec: [/bin/true]\n    user: '1'\n    group: '1'\n"
        "    environment: [{name: A, value: b}]\n    workingDirectory: /srv\n"
    )
    code = (
        "from pathlib import Path; from dgr.manifest_load import load_manifest; "
        f"print(repr(load_manifest(Path({str(tmp_path)!r}))))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(1, 6)
    }
    assert len(seen) == 1
