from __future__ import annotations

import re

import pytest

from dgr.errors import ManifestError
from dgr.names import ImageName, compare_versions, oci_tag, to_ac_name


def test_image_name_parts() -> None:
    n = ImageName.parse("blablacar.github.io/dgr/pod-cassandra:42")
    assert (n.name, n.version) == ("blablacar.github.io/dgr/pod-cassandra", "42")
    assert n.domain == "blablacar.github.io"
    assert n.short_name == "dgr/pod-cassandra"
    assert n.tiny_name == "pod-cassandra"
    assert str(n) == "blablacar.github.io/dgr/pod-cassandra:42"


def test_app_name_sanitised() -> None:
    assert to_ac_name("pod-cassandra_aci-debian-cassandra") == "pod-cassandra-aci-debian-cassandra"


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1.12", "1.12", 0),
        ("1.0.0", "1", 0),
        ("1.05.00.0156", "1.0.221.9289", 1),
        ("1", "1.0.1", -1),
        ("1.0.3", "1.1", -1),
        ("1.1", "1.1.1", -1),
        ("2.21", "2.21-1", -1),
        ("2.21-2", "2.21-1", 1),
        ("2.21-2-1", "2.21-2-2", -1),
        ("2.21-2a", "2.21-2b", -1),
        ("2.21-2a", "2.21-2bccccc", -1),
        ("2.21-2accccccc", "2.21-2b", -1),
        ("2.21-10", "2.21-9", 1),
    ],
)
def test_version_order(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


# The distribution spec's tag grammar.
OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@pytest.mark.parametrize(
    "version, tag",
    [
        ("1.22.1-9+deb12u9", "1.22.1-9_deb12u9"),  # Debian security update
        ("1.22.1-9~bpo12+1", "1.22.1-9_bpo12_1"),  # Debian backport
        ("2.0~rc1", "2.0_rc1"),
        ("1.0.0+build.5", "1.0.0_build.5"),  # semver build metadata
        ("20261127.101010-vabc123", "20261127.101010-vabc123"),  # dgr's generated versions
        ("1.0_x", "1.0_x"),
        ("", "latest"),
    ],
)
def test_versions_map_to_oci_tags(version: str, tag: str) -> None:
    assert oci_tag(version) == tag
    assert OCI_TAG.match(tag)
    if version:
        assert ImageName.parse(f"example.com/app:{version}").version == version  # kept as is


@pytest.mark.parametrize(
    "version", ["+1", "~1", ".1", "-1", "1:2.3-1", "1 2", "1/2", "1,os=linux", "1" * 129]
)
def test_versions_refused(version: str) -> None:
    with pytest.raises(ManifestError, match="invalid version|more than one"):
        ImageName.parse(f"example.com/app:{version}")


def test_every_valid_version_gives_a_valid_tag() -> None:
    alphabet = "aZ09._-+~"
    for first in "aZ09_":
        for rest in alphabet:
            version = first + rest * 127
            ImageName.parse(f"example.com/app:{version}")
            assert OCI_TAG.match(oci_tag(version)), version
