"""The Debian family of examples/debian, built and tested as a user would: `make-builder`, then
`dgr test` on each image and the pod, and the image on a base pushed to a local registry.

These need the network (the Debian mirror the host's apt uses) and take minutes when cold
(seconds when the examples' targets are up to date): marked slow. The source-list parser that
the family uses is tested on its own, fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ociimages import skopeo
from tests.support.registry import running_registry

FAMILY = Path(__file__).resolve().parent.parent.parent / "examples" / "debian"
DGR = Path(sys.executable).with_name("dgr")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A dgr configuration for the family: the session's cache, a store of this module."""
    folder = tmp_path_factory.mktemp("debian-family")
    (folder / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {folder / 'store'}\n")
    return folder


def dgr_test(home: Path, folder: Path, tmp_path: Path, **env: str) -> str:
    """`dgr test` on `folder` (after make-builder); its output, asserting success. TMPDIR is
    the test's own, so that nothing else on the host touches the session's files."""
    made = subprocess.run([str(FAMILY / "make-builder")], capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout + made.stderr
    done = subprocess.run(
        [str(DGR), "-H", str(home), "-W", str(folder), "test"],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp_path), **env},
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_the_debian_base(home: Path, tmp_path: Path) -> None:
    out = dgr_test(home, FAMILY / "aci-debian", tmp_path)
    assert "8 passed" in out
    version = (FAMILY / "aci-debian/target/version").read_text().strip()
    assert version.startswith("example.com/debian:12.")


@pytest.mark.slow
@pytest.mark.integration
def test_nginx_on_it(home: Path, tmp_path: Path) -> None:
    out = dgr_test(home, FAMILY / "aci-nginx", tmp_path)
    assert "10 passed" in out
    name = (FAMILY / "aci-nginx/target/version").read_text().strip()
    assert name.startswith("example.com/nginx:1.") and "+deb12u" in name  # the package's version


@pytest.mark.slow
@pytest.mark.integration
def test_a_pod_of_nginx_and_a_client(home: Path, tmp_path: Path) -> None:
    out = dgr_test(home, FAMILY / "pod-nginx", tmp_path)
    assert "8 passed" in out


@pytest.mark.slow
@pytest.mark.integration
def test_an_image_on_the_base_from_a_registry(home: Path, tmp_path: Path) -> None:
    dgr_test(home, FAMILY / "aci-debian", tmp_path)  # up to date when the base test ran
    version = (FAMILY / "aci-debian/target/version").read_text().strip().split(":", 1)[1]
    with running_registry(tmp_path / "registry") as registry:
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{FAMILY / 'aci-debian/target/oci'}:{version}",
            f"docker://{registry.host}/examples/debian:bookworm",
            policy_dir=tmp_path,
        )
        config = home / "config.yml"
        config.write_text(config.read_text() + f"insecureOptions: [http:{registry.host}]\n")
        try:
            out = dgr_test(home, FAMILY / "aci-curl", tmp_path, EXAMPLE_REGISTRY=registry.host)
        finally:
            config.write_text(
                "".join(line for line in config.read_text().splitlines(True) if "insecure" not in line)
            )
    assert "7 passed" in out


SOURCES = {
    "sources.list": (
        "deb http://mirror.invalid/debian bookworm main contrib\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm-updates main\n"
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb http://third-party.invalid/repo bookworm stable\n"
        "deb-src http://mirror.invalid/debian bookworm main\n"
    ),
    "sources.list.d/debian.sources": (
        "Types: deb deb-src\n"
        "URIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "# the security archive\n"
        "Types: deb\n"
        "URIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main contrib\n"
        "Signed-By:\n"
        " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
        " .\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
        "\n"
        "Types: deb\n"
        "URIs: http://disabled.invalid/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
    ),
    "sources.list.d/other.list": "deb http://other.invalid/debian trixie main\n",
}


def test_host_sources_keeps_the_debian_archive_of_the_suite(tmp_path: Path) -> None:
    for rel, text in SOURCES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    script = FAMILY / "aci-debian" / "host-sources"
    done = subprocess.run(
        [str(script), "bookworm", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "deb http://mirror.invalid/debian bookworm main",
        "deb http://mirror.invalid/debian bookworm-updates main",
        "deb http://security.invalid/debian-security bookworm-security main",
    ]
    missing = subprocess.run([str(script), "trixie-x", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 1 and "no Debian source for trixie-x" in missing.stderr
