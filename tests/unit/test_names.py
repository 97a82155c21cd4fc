from __future__ import annotations

import pytest

from dgr.names import ImageName, compare_versions, to_ac_name


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
