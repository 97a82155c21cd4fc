from __future__ import annotations

from pathlib import Path

import pytest

from dgr.errors import ManifestError
from dgr.manifest import DEFAULT_EXEC
from dgr.manifest_load import detect_project, load_manifest
from dgr.manifest_reader import parse_manifest


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "aci-manifest.yml").write_text(text)
    return tmp_path


def test_only_name(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "name: example.com/aci-test\n"))
    assert m.name.name == "example.com/aci-test"
    assert m.name.version == ""
    assert m.aci.app.exec == DEFAULT_EXEC
    assert (m.aci.app.user, m.aci.app.group) == ("0", "0")


def test_empty_manifest_needs_name(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="name is mandatory in manifest"):
        load_manifest(write(tmp_path, ""))


def test_missing_folder() -> None:
    with pytest.raises(ManifestError, match="Cannot construct aci or pod"):
        detect_project(Path("/does/not/exist"))


def test_unknown_key_names_key_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "name: example.com/a\naci:\n  app:\n    exec: [/bin/sh]\n    workingDir: /x\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert err.value.key == "aci.app.workingDir"
    assert err.value.line == 5
    assert "aci-manifest.yml:5" in str(err.value)


def test_bad_yaml_has_line(tmp_path: Path) -> None:
    write(tmp_path, "name: example.com/a\naci:\n  app: [\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert err.value.line is not None
    assert "invalid YAML" in err.value.message


@pytest.mark.parametrize("name", ["Example.com/App", "example.com//x", "-a.com/x", "a.com/x y"])
def test_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ManifestError, match="invalid image name"):
        load_manifest(write(tmp_path, f"name: '{name}'\n"))


def test_full_manifest(tmp_path: Path) -> None:
    text = """
name: example.com/aci-test:1.0-1
builder:
  dependencies: [example.com/builder:2]
  mountPoints: [{from: ~/.m2, to: /root/.m2}]
  environment: [{name: GOPATH, value: /go}]
build:
  mountPoints: [{from: cache, to: /var/cache/apt}]
tester:
  builder: {dependencies: [example.com/tester-tools]}
  aci:
    dependencies: [example.com/curl:1]
    app:
      environment: [{name: TEST_VAR, value: "true"}]
aci:
  dependencies: [example.com/base:1]
  annotations: [{name: authors, value: me}]
  pathWhitelist: [/etc]
  app:
    exec: [/bin/app, --flag]
    user: "1000"
    group: "1000"
    supplementaryGIDs: [42, 43]
    workingDirectory: /srv
    environment: [{name: PORT, value: 8080}, {name: DEBUG, value: true}]
    mountPoints: [{name: data, path: /data, readOnly: true}]
    ports: [{name: http, port: 8080}]
    isolators: [{name: resource/memory, value: {request: 32M, limit: 256M}}]
"""
    m = load_manifest(write(tmp_path, text))
    assert str(m.name) == "example.com/aci-test:1.0-1"
    assert [str(d) for d in m.builder.dependencies] == ["example.com/builder:2"]
    assert m.builder.mount_points[0].source == "~/.m2"
    assert m.build_mount_points[0].to == "/var/cache/apt"
    assert m.tester.environment[0].value == "true"
    assert [str(d) for d in m.tester.dependencies] == ["example.com/curl:1"]
    app = m.aci.app
    assert app.exec == ("/bin/app", "--flag")
    assert app.supplementary_gids == (42, 43)
    assert [(e.name, e.value) for e in app.environment] == [("PORT", "8080"), ("DEBUG", "true")]
    assert app.mount_points[0].read_only is True
    assert app.ports[0].port == 8080 and app.ports[0].protocol == "tcp"
    assert app.isolators[0].value == {"request": "32M", "limit": "256M"}


def test_version_depending_on_missing_attribute_is_dropped(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "name: example.com/aci-test:{{ version }}-1\n"))
    assert str(m.name) == "example.com/aci-test"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a.com/x\naci: {app: {ports: [{name: http, port: 70000}]}}", "port must be in"),
        ("name: a.com/x\naci: {app: {workingDirectory: rel}}", "absolute"),
        ("name: a.com/x\naci: {app: {mountPoints: [{name: Data_Dir, path: /d}]}}", "lower case"),
        ("name: a.com/x\nbuild: {mountPoints: [{from: a}]}", "needs both"),
        ("name: a.com/x\naci: {dependencies: [Bad/Name]}", "invalid image name"),
        ("name: a.com/x\naci: {app: {supplementaryGIDs: [x]}}", "must be an integer"),
        ("name: 5", "name must be a string, not a number"),
        ("name: a.com/x\naci: {dependencies: [5]}", r"aci.dependencies\[0\] must be a string"),
        ("name: a.com/x\nbuilder: {image: true}", "builder.image must be a string, not a boolean"),
        ("name: a.com/x\naci: {dependencies: [a.com/x]}", "dependency cycle: a.com/x depends on itself"),
        ("name: a.com/x:1\nbuilder: {dependencies: [a.com/x:1]}", "depends on itself"),
        ("name: a.com/x\nbuild: {mountPoints: [{from: a, to: /a, optional: 1}]}", "must be true or false"),
        ("name: a.com/x\nbuild: {timeout: 0}", "build.timeout must be a positive number"),
        ("name: a.com/x\nbuild: {scriptTimeout: soon}", "build.scriptTimeout must be a positive number"),
    ],
)
def test_invalid_values(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text, Path("aci-manifest.yml"))


def test_value_errors_name_the_line(tmp_path: Path) -> None:
    write(tmp_path, "name: example.com/a\naci:\n  app:\n    user: '0'\n    exec: /bin/sh\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert (err.value.key, err.value.line) == ("aci.app.exec", 5)


def test_list_item_errors_name_the_list_line(tmp_path: Path) -> None:
    write(tmp_path, "name: example.com/a\naci:\n  dependencies:\n    - Bad/Name\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert err.value.line == 3


# Before the build, the attributes that build scripts write are unknown: every function and
# filter accepts them, and a version that depends on one is dropped, not guessed.
@pytest.mark.parametrize(
    "version",
    [
        "{{ version }}",
        "{{ version }}-1",
        "{{ version | replace('+', '_') }}",
        "{{ replace(version, '+', '_') }}",
        "{{ version | trimSuffix('+deb12u9') }}",
        "{{ trimSuffix(version, '+deb12u9') }}",
        "{{ version.split('-')[0] }}",
        "{{ split(version, '-')[0] }}",
        "{{ version | regexReplaceAll('^[0-9]+:', '') }}",
        "{{ version | upper }}",
        "{{ '%s-1' | format(version) }}",
        "{{ version ~ '-1' }}",
        "{{ [version, 1] | join('.') }}",
        "{{ nginx.version }}-1",
        "{{ version | default('0.0.0') }}",  # a placeholder would be a wrong version
        "{{ orDef(version, '0') }}",
        "{{ version if version is defined else '1' }}",
        "{% if flavour == 'slim' %}1-slim{% else %}1{% endif %}",
        "1.0{% for p in parts %}-{{ p }}{% endfor %}",
    ],
)
def test_version_from_build_attributes_is_unknown_before_the_build(tmp_path: Path, version: str) -> None:
    write(tmp_path, f"name: example.com/aci-test:{version}\n")
    assert str(load_manifest(tmp_path).name) == "example.com/aci-test"
    # after the build, with the attributes scripts wrote, every function works as usual
    attributes = {"version": "1.22.1-9+deb12u9", "nginx": {"version": "1.22"}, "flavour": "slim"}
    assert load_manifest(tmp_path, {**attributes, "parts": ["a"]}).name.version


@pytest.mark.parametrize(
    "text, name",
    [
        ("name: example.com/a:1.0", "example.com/a:1.0"),
        ("name: example.com/a:{{ 1 + 1 }}", "example.com/a:2"),
        ("name: example.com/a:{{ getenv('DGR_TEST_VERSION') | replace('+', '.') }}", "example.com/a:3.1"),
    ],
)
def test_version_known_before_the_build_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, name: str
) -> None:
    monkeypatch.setenv("DGR_TEST_VERSION", "3+1")
    assert str(load_manifest(write(tmp_path, text + "\n")).name) == name


def test_unknown_values_print_as_no_value(tmp_path: Path) -> None:
    write(tmp_path, 'name: example.com/a:1\naci: {annotations: [{name: x, value: "{{ [version, 1] }}"}]}\n')
    assert load_manifest(tmp_path).aci.annotations[0].value == "<no value>"


def test_defaults_of_other_keys_apply_before_the_build(tmp_path: Path) -> None:
    write(
        tmp_path,
        "name: example.com/a\naci: {app: {ports: [{name: http, port: {{ port | default(80) }}}]}}\n",
    )
    assert load_manifest(tmp_path).aci.app.ports[0].port == 80
    assert load_manifest(tmp_path, {"port": 8080}).aci.app.ports[0].port == 8080


def test_name_depending_on_build_attributes_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "name: example.com/{{ flavour }}:1\n")
    with pytest.raises(ManifestError, match="the image name depends on an attribute") as err:
        load_manifest(tmp_path)
    assert err.value.key == "name"


def test_another_version_of_itself_may_be_a_dependency() -> None:
    m = parse_manifest("name: a.com/x:2\naci: {dependencies: [a.com/x:1]}", Path("aci-manifest.yml"))
    assert [str(d) for d in m.aci.dependencies] == ["a.com/x:1"]


def test_mount_points_and_timeouts() -> None:
    text = (
        "name: a.com/x\nbuild:\n  timeout: 600\n  scriptTimeout: 60\n"
        "  mountPoints:\n    - {from: cache, to: /c, optional: true}\n    - {from: src, to: /s}\n"
    )
    m = parse_manifest(text, Path("aci-manifest.yml"))
    assert (m.build_timeout, m.script_timeout) == (600.0, 60.0)
    optional, required = m.build_mount_points
    assert optional.optional and not required.optional
    assert (required.key, required.line) == ("build.mountPoints[1].from", 7)
    # timeouts and locations are not inputs of the image: not in the build key's repr
    assert "600" not in repr(m) and "line" not in repr(optional)
