"""Python tests of the Debian base: what the build left in the image's own layer."""


def test_version_comes_from_debian_version(dgr_image, dgr_container):
    assert dgr_image.name.version == dgr_container.read_file("/etc/debian_version").strip()


def test_the_layer_has_no_device_and_nothing_in_dev(dgr_image):
    dev = dgr_image.workspace.layer / "dev"
    assert not dev.exists() or not any(dev.iterdir())


def test_apt_lists_and_caches_are_cleaned(dgr_image):
    lists = dgr_image.workspace.layer / "var/lib/apt/lists"
    assert not [p for p in lists.glob("*") if p.is_file() and p.name != "lock"]
