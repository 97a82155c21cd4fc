"""Python tests of the image built on a docker:// base: the base is pinned by digest and its
layers are reused as the registry serves them."""

import json


def test_the_base_is_pinned_by_digest(dgr_image):
    (base,) = dgr_image.dependencies
    assert str(base.name).startswith("docker://") and base.oci is not None
    labels = _config(dgr_image)["config"]["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == base.oci.digest
    pinned = json.loads(_annotation(dgr_image, "dgr-oci-dependencies"))
    assert pinned == [f"{base.name}@{base.oci.digest}"]


def test_the_output_reuses_the_registry_blobs(dgr_image):
    (base,) = dgr_image.dependencies
    layers = [d["digest"] for d in _manifest(dgr_image)["layers"]]
    assert layers[: len(base.oci.layers)] == [layer.digest for layer in base.oci.layers]


def test_the_version_is_curls(dgr_image, dgr_container):
    installed = dgr_container.exec(["dpkg-query", "-W", "-f", "${Version}", "curl"]).output.strip()
    assert dgr_image.name.version == installed


def _manifest(image):
    oci = image.workspace.oci
    index = json.loads((oci / "index.json").read_text())
    return json.loads((oci / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())


def _config(image):
    digest = _manifest(image)["config"]["digest"][7:]
    return json.loads((image.workspace.oci / "blobs/sha256" / digest).read_text())


def _annotation(image, name):
    manifest = json.loads(image.workspace.manifest_json.read_text())
    return next(a["value"] for a in manifest["annotations"] if a["name"] == name)
