"""Versions taken from the software at build time, '+' included: the manifest's functions on
build-time attributes, the pre-build name a dependent resolves, and the version's OCI tag in
the layout, under skopeo and in a registry (issue 10, point 4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dgr.cli import main
from tests.support.files import write_tree
from tests.support.registry import running_registry

pytestmark = pytest.mark.integration

DEBIAN_VERSION = "1.22.1-9+deb12u9"
TAG = "1.22.1-9_deb12u9"
SH = "#!/dgr/bin/busybox sh\n"
# As a Debian package's version would be read with dpkg-query in the builder.
WRITE_VERSION = (
    SH + f"printf 'default:\\n  pkg: {{version: \"{DEBIAN_VERSION}\"}}\\n' > /dgr/builder/attributes/v.yml\n"
)


def skopeo_inspect(reference: str, *extra: str) -> dict[str, object]:
    out = subprocess.run(
        ["skopeo", "inspect", *extra, reference], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    data: dict[str, object] = json.loads(out)
    return data


def test_a_debian_version_is_kept_and_tagged(tmp_path: Path, dgr_home: Path) -> None:
    repo = tmp_path / "repo"
    base = write_tree(
        repo / "aci-nginx",
        {
            # default() must not give this image a wrong version before the build
            "aci-manifest.yml": "name: example.com/aci-nginx:{{ pkg.version | default('0') }}\n",
            "runlevels/builder/10.version.sh": WRITE_VERSION,
        },
    )
    top = write_tree(
        repo / "aci-site",
        {
            "aci-manifest.yml": (
                f"name: example.com/aci-site:1\n"
                f"aci: {{dependencies: [example.com/aci-nginx:{DEBIAN_VERSION}]}}\n"
            )
        },
    )
    assert main(["-H", str(dgr_home), "-W", str(top), "build"]) == 0

    target = base / "target"
    assert (target / "version").read_text() == f"example.com/aci-nginx:{DEBIAN_VERSION}"
    labels = {
        lab["name"]: lab["value"] for lab in json.loads((target / "manifest.json").read_text())["labels"]
    }
    assert labels["version"] == DEBIAN_VERSION
    site = json.loads((top / "target" / "manifest.json").read_text())
    assert site["dependencies"][0]["labels"][0] == {"name": "version", "value": DEBIAN_VERSION}
    index = json.loads((target / "oci" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == TAG
    inspected = skopeo_inspect(f"oci:{target / 'oci'}:{TAG}")
    assert inspected["Labels"]["org.opencontainers.image.version"] == DEBIAN_VERSION  # type: ignore[index]

    with running_registry(tmp_path / "registry") as registry:
        (dgr_home / "config.yml").write_text(
            (dgr_home / "config.yml").read_text()
            + f"push:\n  - type: oci\n    registry: {registry.host}\n    namespace: test\n"
            + f"insecureOptions: ['http:{registry.host}']\n"
        )
        assert main(["-H", str(dgr_home), "-W", str(base), "push"]) == 0
        remote = skopeo_inspect(f"docker://{registry.host}/test/aci-nginx:{TAG}", "--tls-verify=false")
    assert remote["Labels"]["org.opencontainers.image.version"] == DEBIAN_VERSION  # type: ignore[index]


def test_template_functions_on_build_time_attributes(tmp_path: Path, dgr_home: Path) -> None:
    project = write_tree(
        tmp_path / "aci-fn",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-fn:{{ pkg.version.split('+')[0] | replace('-', '.') }}"
                "-{{ pkg.flavour | default('full') | toLower }}\n"
                "aci:\n  annotations:\n"
                "    - {name: upstream, value: \"{{ pkg.version | trimSuffix('+deb12u9') }}\"}\n"
            ),
            "runlevels/builder/10.version.sh": WRITE_VERSION,
        },
    )
    assert main(["-H", str(dgr_home), "-W", str(project), "build"]) == 0
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    assert (project / "target" / "version").read_text() == "example.com/aci-fn:1.22.1.9-full"
    assert {"name": "upstream", "value": "1.22.1-9"} in manifest["annotations"]


def test_an_up_to_date_build_gives_the_manifest_its_build_rendered(tmp_path: Path, options: object) -> None:
    # The tests and `dgr run` start containers from the build result: the app's environment
    # must hold the build-time attribute, not the pre-build `<no value>`.
    from dgr.build import build
    from dgr.options import BuildOptions

    assert isinstance(options, BuildOptions)
    project = write_tree(
        tmp_path / "aci-app",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-app:{{ pkg.version }}\n"
                "aci:\n  app:\n    environment: [{name: PKG_VERSION, value: '{{ pkg.version }}'}]\n"
            ),
            "runlevels/builder/10.version.sh": WRITE_VERSION,
        },
    )
    for expected_up_to_date in (False, True):
        result = build(project, options)
        assert result.up_to_date is expected_up_to_date
        assert result.manifest.name.version == DEBIAN_VERSION
        assert {e.name: e.value for e in result.manifest.aci.app.environment} == {
            "PKG_VERSION": DEBIAN_VERSION
        }
