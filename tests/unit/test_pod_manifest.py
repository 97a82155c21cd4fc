"""pod-manifest.yml: parsing, validation with file/line errors, app inheritance rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.errors import ManifestError
from dgr.manifest import App, NameValue
from dgr.manifest_load import detect_project
from dgr.names import ImageName
from dgr.pod import merge_app
from dgr.podmanifest import load_pod_manifest, parse_pod_manifest

PATH = Path("/p/pod-manifest.yml")


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_pod_manifest(text, PATH)


def error(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        parse(text)
    return err.value


def test_minimal_pod() -> None:
    pod = parse("name: example.com/pod-a\npod:\n  apps:\n    - dependencies: [example.com/aci-web:1]\n")
    assert pod.name == ImageName("example.com/pod-a", "")
    (app,) = pod.apps
    assert app.name == "aci-web"  # the tiny name of the inherit dependency
    assert app.dependencies == (ImageName("example.com/aci-web", "1"),)
    assert app.inherit_from == ImageName("example.com/aci-web", "1")
    assert app.overridden == frozenset()
    assert pod.image_name(app) == ImageName("example.com/pod-a-aci-web", "")


def test_full_pod() -> None:
    pod = parse(
        "name: example.com/pod-a:2\n"
        "pod:\n"
        "  apps:\n"
        "    - name: web\n"
        "      dependencies: [example.com/base:1, example.com/web:3]\n"
        "      inheritDependencyPolicy: last\n"
        "      app:\n"
        "        exec: [/bin/web]\n"
        "        environment: [{name: A, value: b}]\n"
        "      mounts: [{volume: data, path: /data}]\n"
        "      annotations: [{name: example.com/role, value: front}]\n"
        "  volumes:\n"
        "    - {name: data, kind: empty, mode: '0700', uid: 5}\n"
        "    - {name: conf, kind: host, source: /etc/x, readOnly: true}\n"
        "  ports: [{name: http, hostPort: 8080, hostIP: 127.0.0.1}]\n"
        "  annotations: [{name: team, value: core}]\n"
        "  isolators: [{name: os/linux/no-new-privileges, value: true}]\n"
    )
    (app,) = pod.apps
    assert pod.image_name(app) == ImageName("example.com/pod-a-web", "2")
    assert app.inherit_from == ImageName("example.com/web", "3")
    assert app.overridden == {"exec", "environment"}
    assert app.app.exec == ("/bin/web",)
    assert app.mounts[0].volume == "data"
    assert [(v.name, v.kind, v.mode, v.uid) for v in pod.volumes] == [
        ("data", "empty", "0700", 5),
        ("conf", "host", "0755", 0),
    ]
    assert pod.volumes[1].read_only
    assert (pod.ports[0].name, pod.ports[0].host_port, pod.ports[0].host_ip) == ("http", 8080, "127.0.0.1")
    assert pod.annotations == (NameValue("team", "core"),)
    assert pod.isolators[0].name == "os/linux/no-new-privileges"


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (
            "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n      bogus: 1\n",
            "pod.apps[0].bogus",
            5,
        ),
        ("name: example.com/p\npods: {}\n", "pods", 2),
        ("name: 5\npod: {apps: [{dependencies: [example.com/a]}]}\n", "name", 1),
        ("name: example.com/p\npod:\n  apps:\n    - dependencies: [7]\n", "pod.apps[0].dependencies[0]", 4),
        (
            "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n      app:\n"
            "        workingDir: /x\n",
            "pod.apps[0].app.workingDir",
            6,
        ),
        (
            "name: example.com/p\npod:\n  apps:\n    - name: My_App\n      dependencies: [example.com/a]\n",
            "pod.apps[0].name",
            4,
        ),
        (
            "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n"
            "      inheritDependencyPolicy: middle\n",
            "pod.apps[0].inheritDependencyPolicy",
            5,
        ),
        (
            "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n"
            "    - dependencies: [example.com/a]\n",
            "pod.apps[1].name",
            5,
        ),
        (
            "name: example.com/p\npod:\n  apps: [{dependencies: [example.com/a]}]\n"
            "  volumes:\n    - name: v\n      kind: nfs\n",
            "pod.volumes[0]",
            6,
        ),
    ],
)
def test_errors_name_key_file_and_line(text: str, key: str, line: int) -> None:
    err = error(text)
    assert err.key == key
    assert err.line == line
    assert f"pod-manifest.yml:{line}" in str(err)


def test_name_is_mandatory() -> None:
    text = "pod:\n  apps: [{dependencies: [example.com/a]}]\n"
    assert "name is mandatory in manifest" in error(text).message


def test_apps_are_mandatory() -> None:
    assert "at least one app" in error("name: example.com/p\npod: {}\n").message
    assert "at least one app" in error("name: example.com/p\n").message


def test_invalid_dependency_name() -> None:
    text = "name: example.com/p\npod:\n  apps: [{dependencies: [Bad_Name]}]\n"
    assert "invalid image name" in error(text).message


def test_app_without_dependency_needs_name_and_exec() -> None:
    head = "name: example.com/p\npod:\n  apps: "
    assert "name is mandatory" in error(head + "[{app: {exec: [/x]}}]\n").message
    assert "needs dependencies" in error(head + "[{name: a}]\n").message
    pod = parse(head + "[{name: a, app: {exec: [/dgr/bin/busybox, 'true']}}]\n")
    assert pod.apps[0].inherit_from is None


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ("    - {name: v, kind: host}\n", "source is mandatory"),
        ("    - {name: v, kind: host, source: /x, uid: 1}\n", "not allowed for a host volume"),
        ("    - {name: v, kind: empty, source: /x}\n", "not allowed for an empty volume"),
        ("    - {name: v, kind: empty}\n    - {name: v, kind: empty}\n", "duplicate volume"),
        ("    - {name: v, kind: empty, mode: rwx}\n", "must be octal"),
    ],
)
def test_volume_rules(volumes: str, message: str) -> None:
    base = "name: example.com/p\npod:\n  apps: [{dependencies: [example.com/a]}]\n  volumes:\n"
    assert message in error(base + volumes).message


def test_mounts_name_pod_volumes() -> None:
    text = (
        "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n"
        "      mounts: [{volume: v, path: /v}]\n"
    )
    assert "no volume 'v'" in error(text).message


def test_merge_app_keeps_inherited_fields_and_merges_environment() -> None:
    pod = parse(
        "name: example.com/p\npod:\n  apps:\n    - dependencies: [example.com/a]\n      app:\n"
        "        exec: [/bin/other]\n"
        "        environment: [{name: B, value: pod}, {name: C, value: new}]\n"
    )
    inherited = App(
        exec=("/bin/web",), user="100", environment=(NameValue("A", "1"), NameValue("B", "image"))
    )
    merged = merge_app(inherited, pod.apps[0])
    assert merged.exec == ("/bin/other",)
    assert merged.user == "100"  # not set by the pod: inherited
    assert merged.environment == (NameValue("A", "1"), NameValue("B", "pod"), NameValue("C", "new"))


def test_pod_manifest_is_a_template_of_the_pod_attributes(tmp_path: Path) -> None:
    (tmp_path / "attributes").mkdir()
    (tmp_path / "attributes" / "pod.yml").write_text("default:\n  release: '7'\n")
    (tmp_path / "pod-manifest.yml").write_text(
        "name: example.com/p:{{ release }}\npod:\n  apps: [{dependencies: [example.com/a]}]\n"
    )
    assert detect_project(tmp_path) == "pod"
    assert load_pod_manifest(tmp_path).name == ImageName("example.com/p", "7")
