from __future__ import annotations

import pytest

from dgr.export import ExportError, engine_reference
from dgr.names import ImageName


def test_engine_names() -> None:
    assert engine_reference(ImageName("example.com/group/app", "1"), "1") == "example.com/group/app:1"
    assert engine_reference(ImageName("registry:5000/app", ""), "latest") == "registry:5000/app:latest"
    assert engine_reference(ImageName("localhost/app", "1"), "1") == "localhost/app:1"
    # no registry host: podman's name for a local image
    assert engine_reference(ImageName("group/app", "1"), "1") == "localhost/group/app:1"
    assert engine_reference(ImageName("app", "1"), "1") == "localhost/app:1"


@pytest.mark.parametrize(
    ("name", "tag", "message"),
    [
        ("example.com/a~b", "1", "'a~b' is not a valid repository path component"),
        ("example.com/-app", "1", "not a valid repository path component"),
        ("example.com/app", "1+build", r"'1\+build' .* is not a valid image tag"),
    ],
)
def test_names_engines_refuse(name: str, tag: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        engine_reference(ImageName(name, tag), tag)
