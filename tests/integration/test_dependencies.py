"""Images built on images: a three-level chain of local projects, and a builder dependency."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from dgr.config import load_config
from dgr.container import Container, image_spec
from dgr.options import BuildOptions
from dgr.plan import plan_build_image
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

SH = "#!/dgr/bin/busybox sh\n"
# Names chosen so that alphabetical order (aa < zz) is the opposite of dependency order.
PROJECTS = {
    "zz-base": {
        "aci-manifest.yml": "name: example.com/zz-base:1\n",
        "runlevels/builder/10.busybox.sh": (
            SH + "mkdir -p $ROOTFS/bin\ncp /bin/busybox $ROOTFS/bin/busybox\nln -s busybox $ROOTFS/bin/sh\n"
        ),
        "runlevels/inherit-build-early/10.mark.sh": SH + 'echo "early $ACI_NAME" >> /inherit.log\n',
        "runlevels/inherit-build-late/10.mark.sh": SH + 'echo "late $ACI_NAME" >> /inherit.log\n',
        "files/etc/base-file": "base\n",
        "files/etc/to-delete": "doomed\n",
        "attributes/base.yml": "default:\n  who: base\n  level: base\n",
        "templates/etc/from-base.tmpl": "base template sees {{ level }}\n",
        "templates/etc/overridden.tmpl": "from base\n",
    },
    "aa-middle": {
        "aci-manifest.yml": "name: example.com/aa-middle:1\naci:\n  dependencies: [example.com/zz-base:1]\n",
        "runlevels/build/10.delete.sh": SH + "rm /etc/to-delete\n",
        "files/etc/middle-file": "middle\n",
        "attributes/middle.yml": "default:\n  level: middle\n",
    },
    "tools": {
        "aci-manifest.yml": "name: example.com/tools:1\naci:\n  dependencies: [example.com/zz-base:1]\n",
        "files/usr/bin/mytool": "#!/bin/sh\necho tool ran\n",
    },
    "app": {
        "aci-manifest.yml": (
            "name: example.com/app:1\n"
            "builder:\n  dependencies: [example.com/tools:1]\n"
            "aci:\n  dependencies: [example.com/aa-middle:1]\n"
        ),
        "runlevels/builder/10.tool.sh": (
            "#!/bin/sh\nchmod +x /usr/bin/mytool\nmytool > $ROOTFS/etc/tool-output\n"
        ),
        "files/etc/app-file": "app\n",
        "templates/etc/who.tmpl": "{{ who }} {{ level }}\n",
        "templates/etc/overridden.tmpl": "from app\n",
    },
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):  # type: ignore[no-untyped-def]
    repo = tmp_path_factory.mktemp("repo")
    for folder, files in PROJECTS.items():
        for rel, text in files.items():
            path = repo / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    home = repo / ".home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {repo / '.store'}\n")
    options = BuildOptions(config=load_config(home))
    return repo, plan_build_image(repo / "app", options)


def test_dependencies_are_built_and_pinned(chain) -> None:  # type: ignore[no-untyped-def]
    repo, app = chain
    assert [str(d.name) for d in app.dependencies] == ["example.com/aa-middle:1"]
    assert [str(d.name) for d in app.dependencies[0].dependencies] == ["example.com/zz-base:1"]
    for folder in ("zz-base", "aa-middle", "tools"):
        assert (repo / folder / "target" / "image.aci").exists()
    import json

    manifest = json.loads((repo / "app" / "target" / "manifest.json").read_text())
    dep = manifest["dependencies"][0]
    assert dep["imageName"] == "example.com/aa-middle"
    assert dep["imageID"].startswith("sha512-")
    assert {"name": "version", "value": "1"} in dep["labels"]


def test_aci_holds_only_its_own_layer(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    with tarfile.open(app.workspace.aci) as tar:
        names = set(tar.getnames())
    assert "rootfs/etc/app-file" in names and "rootfs/etc/tool-output" in names
    assert not names & {
        "rootfs/etc/base-file",
        "rootfs/etc/middle-file",
        "rootfs/bin/busybox",
        "rootfs/usr/bin/mytool",
    }


def test_builder_dependency_provides_a_tool(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    assert (app.workspace.layer / "etc" / "tool-output").read_text() == "tool ran\n"


def test_inherit_runlevels_run_in_dependents(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    result = Container(image_spec(app, exec_=["/bin/sh", "-c", "cat /inherit.log"])).run(timeout=60)
    assert result.output.splitlines()[-6:] == [
        "early zz-base",
        "late zz-base",
        "early aa-middle",
        "late aa-middle",
        "early app",
        "late app",
    ]


def test_run_sees_all_layers_and_deletions(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    script = (
        "cat /etc/base-file /etc/middle-file /etc/app-file /etc/who; test -e /etc/to-delete || echo deleted"
    )
    result = Container(image_spec(app, exec_=["/bin/sh", "-c", script])).run(timeout=60)
    assert result.output.splitlines()[-5:] == ["base", "middle", "app", "base middle", "deleted"]


def test_oci_layout_runs_under_podman(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    script = (
        "cat /etc/base-file /etc/middle-file /etc/app-file /etc/who; test -e /etc/to-delete || echo deleted"
    )
    with Podman(tmp_path / "podman") as podman:
        image = podman.load_oci(app.workspace.oci, "1", name="app")
        out = podman.run(image, "/bin/sh", "-c", script)
    assert out.output.splitlines()[-5:] == ["base", "middle", "app", "base middle", "deleted"]


def test_attribute_precedence_follows_dependency_order_not_names(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    order = (app.workspace.layer / "dgr" / "attributes" / ".dgr-order").read_text().split()
    assert order == ["zz-base/base.yml", "aa-middle/middle.yml"]


def test_try_uses_the_dependencies_attributes(chain) -> None:  # type: ignore[no-untyped-def]
    from dgr.cli import main

    repo, _ = chain
    assert main(["-H", str(repo / ".home"), "-W", str(repo / "app"), "try"]) == 0
    assert (repo / "app" / "target" / "try" / "etc" / "who").read_text() == "base middle\n"


def test_dependency_templates_are_inherited_and_the_image_wins(chain) -> None:  # type: ignore[no-untyped-def]
    _, app = chain
    script = "cat /etc/from-base /etc/overridden"
    result = Container(image_spec(app, exec_=["/bin/sh", "-c", script])).run(timeout=60)
    assert result.output.splitlines()[-2:] == ["base template sees middle", "from app"]


def test_install_keeps_the_layer_whiteouts(chain) -> None:  # type: ignore[no-untyped-def]
    import stat

    from dgr.cli import main
    from dgr.names import ImageName
    from dgr.store import Store

    repo, _ = chain
    assert main(["-H", str(repo / ".home"), "-W", str(repo / "aa-middle"), "install"]) == 0
    stored = Store(repo / ".store").find(ImageName("example.com/aa-middle", "1"))
    assert stored is not None
    whiteout = (stored.layer / "etc" / "to-delete").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
