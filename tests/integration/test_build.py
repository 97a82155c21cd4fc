"""Builds of real images through the CLI, as the original's integration cases."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from dgr.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def dgr(dgr_home: Path):  # type: ignore[no-untyped-def]
    """Run the CLI in-process with a config pointing at the shared cache."""

    def run(*args: str) -> int:
        return main(["-H", str(dgr_home), *args])

    return run


def project(tmp_path: Path, files: dict[str, str], name: str = "aci-test") -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def aci_members(aci: Path) -> list[str]:
    with tarfile.open(aci) as tar:
        return tar.getnames()


def test_only_name_builds_with_generated_version(dgr, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = project(tmp_path, {"aci-manifest.yml": "name: example.com/aci-test\n"})
    assert dgr("-W", str(p), "build") == 0
    version = (p / "target" / "version").read_text()
    assert version.startswith("example.com/aci-test:")
    assert len(version.split(":")[1]) >= len("20261127.101010")
    manifest = json.loads((p / "target" / "manifest.json").read_text())
    assert manifest["name"] == "example.com/aci-test"
    subprocess.run(["actool", "validate", str(p / "target" / "image.aci")], check=True)


def test_empty_manifest_fails(dgr, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    p = project(tmp_path, {"aci-manifest.yml": ""})
    assert dgr("-W", str(p), "build") == 1


def test_missing_folder_fails(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert dgr("-W", str(tmp_path / "DOES_NOT_EXIST"), "build") == 1


def test_failing_script_names_runlevel_and_script(dgr, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = project(
        tmp_path,
        {
            "aci-manifest.yml": "name: example.com/aci-fail:1\n",
            "runlevels/build/10.ok.sh": "#!/dgr/bin/busybox sh\necho fine\n",
            "runlevels/build/20.fail.sh": "#!/dgr/bin/busybox sh\necho about to fail\nexit 1\n",
            "runlevels/build/30.never.sh": "#!/dgr/bin/busybox sh\ntouch /never\n",
        },
    )
    assert dgr("-W", str(p), "build") == 1
    err = capsys.readouterr().err
    assert "runlevel build failed" in err and "20.fail.sh" in err
    assert "about to fail" in err
    assert not (p / "target" / "image.aci").exists()


def test_failed_rebuild_keeps_previous_image(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = project(tmp_path, {"aci-manifest.yml": "name: example.com/aci-keep:1\n"})
    assert dgr("-W", str(p), "build") == 0
    before = (p / "target" / "image.aci").read_bytes()
    script = p / "runlevels" / "build" / "10.fail.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/dgr/bin/busybox sh\nexit 3\n")
    assert dgr("-W", str(p), "build") == 1
    assert (p / "target" / "image.aci").read_bytes() == before
    assert not list((p / "target").glob("*.tmp")) and not list((p / "target").glob(".*.tmp"))


RECORD = '#!/dgr/bin/busybox sh\necho "{name} ROOTFS=${{ROOTFS:-none}} ACI_NAME=$ACI_NAME" >> {log}\n'


def test_runlevel_order_roots_and_environment(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = {"aci-manifest.yml": "name: example.com/aci-order:1\n"}
    for level, log in (
        ("builder", "$ROOTFS/order.log"),
        ("build", "/order.log"),
        ("build-late", "/order.log"),
        ("inherit-build-early", "/order.log"),
        ("inherit-build-late", "/order.log"),
    ):
        files[f"runlevels/{level}/10.{level}.sh"] = RECORD.format(name=level, log=log)
    files["runlevels/build-late/20.files.sh"] = (
        "#!/dgr/bin/busybox sh\n"
        "[ -f /etc/copied ] && [ -f /dgr/templates/t.tmpl ] && echo files-present >> /order.log\n"
    )
    files["files/etc/copied"] = "x\n"
    files["templates/t.tmpl"] = "t\n"
    p = project(tmp_path, files)
    assert dgr("-W", str(p), "build") == 0
    lines = (p / "target" / "layer" / "order.log").read_text().splitlines()
    assert lines == [
        "builder ROOTFS=/rootfs ACI_NAME=aci-order",
        "inherit-build-early ROOTFS=none ACI_NAME=aci-order",
        "build ROOTFS=none ACI_NAME=aci-order",
        "build-late ROOTFS=none ACI_NAME=aci-order",
        "files-present",
        "inherit-build-late ROOTFS=none ACI_NAME=aci-order",
    ]


def test_builder_runs_in_busybox_builder_root(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = project(
        tmp_path,
        {
            "aci-manifest.yml": "name: example.com/aci-builder:1\n",
            "runlevels/builder/10.probe.sh": (
                "#!/bin/sh\nset -e\n"
                "[ -x /bin/busybox ] && [ -d $ROOTFS/dgr/bin ] && [ -f $ACI_HOME/aci-manifest.yml ]\n"
                "mkdir -p $ROOTFS/usr/bin && cp /bin/busybox $ROOTFS/usr/bin/tool\n"
            ),
        },
    )
    assert dgr("-W", str(p), "build") == 0
    names = aci_members(p / "target" / "image.aci")
    assert "rootfs/usr/bin/tool" in names
    assert not any(n.startswith("rootfs/bin/") for n in names), "builder files leaked into the image"
    assert not any(n.startswith("rootfs/rootfs") or n.startswith("rootfs/proc/") for n in names)


def test_set_env_and_dgr_env_reach_scripts(dgr, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DGR_ENV_FROM_HOST", "host")
    monkeypatch.setenv("DGR_ENV_BOTH", "host")
    p = project(
        tmp_path,
        {
            "aci-manifest.yml": (
                "name: example.com/aci-env:1\n"
                "builder: {environment: [{name: FROM_MANIFEST, value: manifest},"
                " {name: BOTH, value: manifest}]}\n"
            ),
            "runlevels/build/10.env.sh": (
                "#!/dgr/bin/busybox sh\n"
                'echo "$FROM_HOST $FROM_MANIFEST $BOTH $FLAG $LOG_LEVEL $ACI_HOME $ACI_EXEC" > /env.txt\n'
            ),
        },
    )
    assert dgr("-W", str(p), "--set-env", "BOTH=flag", "--set-env", "FLAG=yes", "build") == 0
    text = (p / "target" / "layer" / "env.txt").read_text().strip()
    assert text == "host manifest flag yes INFO /dgr/aci-home /dgr/bin/busybox sh"


def test_no_mount_or_process_left_after_failed_build(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = project(
        tmp_path,
        {
            "aci-manifest.yml": "name: example.com/aci-leak:1\n",
            "runlevels/build/10.bg.sh": "#!/dgr/bin/busybox sh\n/dgr/bin/busybox sleep 300 &\nexit 1\n",
        },
    )
    assert dgr("-W", str(p), "build") == 1
    # the autouse leak check asserts mountinfo and child processes after the test
    out = subprocess.run(["pgrep", "-f", "busybox sleep 300"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_init_project_builds_and_validates(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "aci-init"
    assert dgr("-W", str(p), "init") == 0
    assert dgr("-W", str(p), "build") == 0
    aci = p / "target" / "image.aci"
    subprocess.run(["actool", "validate", str(aci)], check=True)
    names = aci_members(aci)
    assert names[0] == "manifest" and names[1] == "rootfs"
    for expected in (
        "rootfs/etc/dummy",
        "rootfs/dgr/templates/etc/templated.tmpl",
        "rootfs/dgr/attributes/aci-dummy/attributes.yml",
        "rootfs/dgr/bin/prestart",
        "rootfs/dgr/runlevels/prestart-early/10.prestart-early.sh",
    ):
        assert expected in names


def test_rebuild_without_change_is_up_to_date(dgr, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "aci-init"
    assert dgr("-W", str(p), "init") == 0
    assert dgr("-W", str(p), "build") == 0
    first = (p / "target" / "image.id").read_text()
    capsys.readouterr()
    assert dgr("-W", str(p), "build") == 0
    err = capsys.readouterr().err
    assert "up to date" in err and "Finished building" not in err
    (p / "templates" / "etc" / "templated.tmpl").touch()  # touching alone changes nothing
    assert dgr("-W", str(p), "build") == 0
    assert (p / "target" / "image.id").read_text() == first
    tmpl = p / "templates" / "etc" / "templated.tmpl"
    tmpl.write_text(tmpl.read_text() + "!")
    assert dgr("-W", str(p), "build") == 0
    assert "Finished building" in capsys.readouterr().err
    assert (p / "target" / "image.id").read_text() != first


def test_clean_removes_target(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = project(tmp_path, {"aci-manifest.yml": "name: example.com/aci-clean:1\n"})
    assert dgr("-W", str(p), "build") == 0
    assert dgr("-W", str(p), "clean") == 0
    assert not (p / "target").exists()
    assert dgr("-W", str(p), "clean", "build") == 0
    assert (p / "target" / "image.aci").exists()


def test_paths_escaping_the_project_are_refused(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    p = project(tmp_path, {"aci-manifest.yml": "name: example.com/aci-esc:1\n"})
    os.symlink(outside, p / "files")
    assert dgr("-W", str(p), "build") == 1


def test_mount_points_bind_host_folders(dgr, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "userhome"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SUDO_USER", raising=False)
    p = project(
        tmp_path,
        {
            "aci-manifest.yml": (
                "name: example.com/aci-mounts:1\n"
                "builder: {mountPoints: [{from: ~/.m2, to: /root/.m2, optional: true}]}\n"
                "build: {mountPoints: [{from: cache, to: /var/cache/apt, optional: true}]}\n"
            ),
            "runlevels/builder/10.m2.sh": "#!/bin/sh\necho from-builder > /root/.m2/artifact\n",
            "runlevels/build/10.cache.sh": "#!/dgr/bin/busybox sh\necho from-build > /var/cache/apt/pkg\n",
        },
    )
    assert dgr("-W", str(p), "build") == 0
    assert (home / ".m2" / "artifact").read_text() == "from-builder\n"
    assert (p / "cache" / "pkg").read_text() == "from-build\n"
    names = aci_members(p / "target" / "image.aci")
    assert not any(n.startswith("rootfs/var/cache") for n in names)
    assert dgr("-W", str(p), "build") == 0
    assert "up to date" in capsys.readouterr().err, "a mount source in the project is a cache, not an input"


def test_cp_copies_from_the_image(dgr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "aci-init"
    assert dgr("-W", str(p), "init") == 0
    out = tmp_path / "out"
    assert dgr("-W", str(p), "cp", "/etc/dummy", str(out)) == 0
    assert (out / "dummy").read_text() == "Dummy file\n"
    assert dgr("-W", str(p), "cp", "/dgr/templates", str(out)) == 0
    assert (out / "templates" / "etc" / "templated.tmpl").exists()
    assert dgr("-W", str(p), "cp", "/not/there", str(out)) == 1
    assert not list((p / "target").glob(".cp-*"))


def test_aci_version_and_config(dgr, dgr_home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = project(tmp_path, {"aci-manifest.yml": "name: example.com/aci-v:2.1-3\n"})
    assert dgr("-W", str(p), "build") == 0
    capsys.readouterr()
    assert dgr("aci-version", str(p / "target" / "image.aci")) == 0
    assert capsys.readouterr().out == "2.1-3\n"
    assert dgr("config", "storePath") == 0
    assert capsys.readouterr().out == f"{tmp_path / 'store'}\n"
    assert dgr("config", "nope") == 1
