from __future__ import annotations

from dgr.kube import image_reference
from dgr.names import ImageName


def test_image_reference_uses_the_oci_tag() -> None:
    assert (
        image_reference(ImageName("example.com/web", "1.22.1-9+deb12u9"))
        == "localhost/example.com/web:1.22.1-9_deb12u9"
    )
    assert (
        image_reference(ImageName("example.com/web"), "registry.test:5000/")
        == "registry.test:5000/example.com/web:latest"
    )
