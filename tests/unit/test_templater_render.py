"""Rendering template trees: the original templater's cases in Jinja2 form, plus .cfg and
atomic output."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from dgr.errors import TemplateError
from dgr.templater import output_name, render_tree, run


class Project:
    """A folder with attributes/ and templates/, rendered into out/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "out"

    def attributes(self, rel: str, text: str) -> Path:
        return self._write(self.root / "attributes" / rel, text)

    def template(self, rel: str, text: str) -> Path:
        return self._write(self.root / "templates" / rel, text)

    def _write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, env: dict[str, str] | None = None, **kwargs: object) -> list[Path]:
        return run(self.root / "attributes", self.root / "templates", self.out, env or {}, **kwargs)  # type: ignore[arg-type]

    def output(self, rel: str) -> str:
        return (self.out / rel).read_text()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


# --- the original's cases --------------------------------------------------------------------------


def test_plain_rendering_with_if_else(project: Project) -> None:
    project.attributes("a.yml", "default: {name: web, tls: false}")
    project.template("conf.tmpl", "name={{ name }}\n{% if tls %}tls on{% else %}tls off{% endif %}\n")
    project.run()
    assert project.output("conf") == "name=web\ntls off\n"


def test_or_def_if_or_def_or_defs(project: Project) -> None:
    project.attributes("a.yml", "default: {a: null, list: [], one: x}")
    project.template(
        "t.tmpl", "{{ orDef(a, 'dflt') }} {{ ifOrDef(one, 'yes', 'no') }} {{ orDefs(list, 'z') | join }}\n"
    )
    project.run()
    assert project.output("t") == "dflt yes z\n"


def test_to_yaml_and_to_json(project: Project) -> None:
    project.attributes("a.yml", "default: {m: {b: [1, 2], a: x}}")
    project.template("t.tmpl", "{{ toYaml(m) }}\n{{ toJson(m.b) }}\n")
    project.run()
    assert project.output("t") == "a: x\nb:\n- 1\n- 2\n[\n  1,\n  2\n]\n"


def test_resolv_conf_example(project: Project) -> None:
    project.attributes(
        "dns.yml", "default:\n  dns:\n    nameservers: [8.8.8.8, 8.8.4.4]\n    search: [example.com]\n"
    )
    project.template(
        "etc/resolv.conf.tmpl",
        "{% for ns in dns.nameservers %}nameserver {{ ns }}\n{% endfor %}"
        "search {{ dns.search | join(' ') }}\n",
    )
    project.run()
    assert (
        project.output("etc/resolv.conf") == "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch example.com\n"
    )


def test_partials_with_type_tests_via_import_and_include(project: Project) -> None:
    project.attributes("a.yml", "default: {root: {s: str, l: [1], m: {k: v}, z: {a: 1, b: 2}}}")
    project.template(
        "macros.partial",
        "{% macro kind(v) %}{% if isString(v) %}string{% elif isArray(v) %}array"
        "{% elif isMap(v) %}map{% endif %}{% endmacro %}",
    )
    project.template("header.partial", "# {{ howDeep(root, root.m) }}{{ isMapFirst(root.z, 'a') }}\n")
    project.template(
        "sub/dir/t.tmpl",
        '{% import "macros.partial" as m %}{% include "header.partial" %}'
        "{{ m.kind(root.s) }} {{ m.kind(root.l) }} {{ m.kind(root.m) }}\n",
    )
    project.run()
    assert project.output("sub/dir/t") == "# 1true\nstring array map\n"
    assert not (project.out / "macros.partial").exists()


def test_passing_several_values_to_a_partial_with_pairs(project: Project) -> None:
    project.attributes("a.yml", "default: {host: h, port: 80}")
    project.template("m.partial", "{% macro url(p) %}http://{{ p.host }}:{{ p.port }}{% endmacro %}")
    project.template(
        "t.tmpl", '{% import "m.partial" as m %}{{ m.url(pairs("host", host, "port", port)) }}\n'
    )
    project.run()
    assert project.output("t") == "http://h:80\n"


def test_sprig_functions_in_a_file(project: Project) -> None:
    project.attributes("a.yml", "default: {n: 1, m: {b: 1, a: 2}}")
    project.template("t.tmpl", "{{ add1(n) }} {{ keys(m) | sortAlpha | join(',') }}\n")
    project.run()
    assert project.output("t") == "2 a,b\n"


def test_attribute_templates_reparsed_as_yaml_in_files(project: Project) -> None:
    project.attributes("a.yml", "default: {hosts: [a, b], copy: '{{ toYaml(hosts) }}'}")
    project.template("t.tmpl", "{% for h in copy %}{{ h }};{% endfor %}\n")
    project.run()
    assert project.output("t") == "a;b;\n"


def test_json_override_reaches_templates(project: Project) -> None:
    project.attributes("a.yml", "default: {v: file}")
    project.template("t.tmpl", "{{ v }}")
    project.run({"TEMPLATER_OVERRIDE": '{"v": "env"}'})
    assert project.output("t") == "env"


@pytest.mark.parametrize("prefix", ["", "base64,"])
def test_base64_override_reaches_templates(project: Project, prefix: str) -> None:
    project.attributes("a.yml", "default: {v: file}")
    project.template("t.tmpl", "{{ v }}")
    project.run({"TEMPLATER_OVERRIDE_BASE64": prefix + base64.b64encode(b'{"v": "b64"}').decode()})
    assert project.output("t") == "b64"


def test_configmap_attributes_render_once(project: Project) -> None:
    folder = project.root / "attributes" / "cm"
    project.attributes("cm/..2024_01_01/x.yml", "default: {v: cm}")
    (folder / "..data").symlink_to("..2024_01_01")
    (folder / "x.yml").symlink_to("..data/x.yml")
    project.template("t.tmpl", "{{ v }}")
    project.run()
    assert project.output("t") == "cm"


# --- naming and .cfg -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "output"),
    [
        ("a.tmpl", "a"),
        ("resolv.tmpl.conf", "resolv.conf"),
        ("yopla.tmpl.yml", "yopla.yml"),
        ("x.tmpl.cfg", None),
        ("x.tmpl.conf.cfg", None),
        ("header.partial", None),
        ("plain.conf", None),
    ],
)
def test_output_names(name: str, output: str | None) -> None:
    assert output_name(name) == output


def test_two_templates_with_the_same_output_are_an_error(project: Project) -> None:
    project.template("a.tmpl.conf", "1")
    project.template("a.conf.tmpl", "2")
    with pytest.raises(TemplateError, match="both render to a.conf"):
        project.run()


def test_tmpl_ext_naming_and_cfg_mode(project: Project) -> None:
    project.attributes("a.yml", "default: {v: 1}")
    project.template("etc/yopla.tmpl.yml", "v: {{ v }}\n")
    project.template("etc/yopla.tmpl.yml.cfg", "mode: 0600\n")
    project.template("etc/plain.conf", "copied?")
    project.run()
    assert project.output("etc/yopla.yml") == "v: 1\n"
    assert stat.S_IMODE((project.out / "etc/yopla.yml").stat().st_mode) == 0o600
    assert not (project.out / "etc/plain.conf").exists()
    assert sorted(p.name for p in (project.out / "etc").iterdir()) == ["yopla.yml"]


@pytest.mark.parametrize("written", ["0640", "640", '"0640"', '"640"', '"0o640"'])
def test_cfg_mode_is_octal_as_written(project: Project, written: str) -> None:
    project.template("t.tmpl", "x")
    project.template("t.tmpl.cfg", f"mode: {written}\n")
    project.run()
    assert stat.S_IMODE((project.out / "t").stat().st_mode) == 0o640


def test_default_mode_is_the_templates_own(project: Project) -> None:
    os.chmod(project.template("run.sh.tmpl", "#!/bin/sh\n"), 0o750)
    project.run()
    assert stat.S_IMODE((project.out / "run.sh").stat().st_mode) == 0o750


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_cfg_uid_and_gid(project: Project) -> None:
    project.template("t.tmpl", "x")
    project.template("t.tmpl.cfg", "uid: 1000\ngid: 1001\n")
    project.run()
    info = (project.out / "t").stat()
    assert (info.st_uid, info.st_gid) == (1000, 1001)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ("mode: 0999\n", "mode must be octal"),
        ("uid: -1\n", "uid must be a number"),
        ("checkcmd: true\n", "unknown key"),
        ("checkCmd: [a]\n", "checkCmd must be a shell command"),
        ("- a\n", "must be a map"),
    ],
)
def test_bad_cfg_is_an_error_naming_it(project: Project, cfg: str, message: str) -> None:
    project.template("t.tmpl", "x")
    cfg_path = project.template("t.tmpl.cfg", cfg)
    with pytest.raises(TemplateError, match=message) as err:
        project.run()
    assert err.value.path == str(cfg_path)
    assert not (project.out / "t").exists()


def test_check_cmd_runs_after_writing(project: Project) -> None:
    project.template("t.tmpl", "hello")
    project.template("t.tmpl.cfg", f"checkCmd: grep -q hello {project.out / 't'}\n")
    assert project.run(check_shell=["/bin/sh", "-c"]) == [project.out.resolve() / "t"]


def test_failing_check_cmd_names_file_and_output(project: Project) -> None:
    project.template("t.tmpl", "x")
    project.template("t.tmpl.cfg", "checkCmd: echo 'bad config on line 3'; exit 3\n")
    with pytest.raises(TemplateError, match=r"checkCmd .* failed \(exit 3\): bad config on line 3") as err:
        project.run(check_shell=["/bin/sh", "-c"])
    assert err.value.path == str(project.out.resolve() / "t")


def test_check_cmd_skipped_when_asked(project: Project) -> None:
    project.template("t.tmpl", "x")
    project.template("t.tmpl.cfg", "checkCmd: exit 1\n")
    project.run(run_checks=False)
    assert project.output("t") == "x"


# --- failures leave outputs intact -----------------------------------------------------------------


def test_missing_value_names_file_line_and_attribute_and_writes_nothing(project: Project) -> None:
    project.attributes("a.yml", "default: {dns: {ns: [1.1.1.1]}}")
    project.out.mkdir()
    (project.out / "good").write_text("previous good")
    (project.out / "bad").write_text("previous bad")
    project.template("a/good.tmpl", "{{ dns.ns[0] }}")  # sorts first: rendered, not written
    bad = project.template("b/bad.tmpl", "ok\n{{ dns.servers }}\n")
    with pytest.raises(TemplateError) as err:
        project.run()
    assert (err.value.path, err.value.line) == (str(bad), 2)
    assert "missing attribute 'dns.servers'" in err.value.message
    assert project.output("good") == "previous good"
    assert project.output("bad") == "previous bad"
    assert sorted(p.name for p in project.out.iterdir()) == ["bad", "good"]  # no a/ nor b/


def test_error_in_an_included_partial_names_the_partial(project: Project) -> None:
    partial = project.template("p.partial", "\n\n{{ nope }}")
    project.template("t.tmpl", '{% include "p.partial" %}')
    with pytest.raises(TemplateError, match="missing attribute 'nope'") as err:
        project.run()
    assert (err.value.path, err.value.line) == (str(partial), 3)


def test_output_replaces_previous_content_atomically(project: Project) -> None:
    project.out.mkdir()
    (project.out / "t").write_text("old")
    project.template("t.tmpl", "new")
    project.run()
    assert project.output("t") == "new"
    assert [p.name for p in project.out.iterdir()] == ["t"]  # no temporary file left behind


def test_new_directories_get_their_source_directory_mode(project: Project) -> None:
    project.template("secret/t.tmpl", "x")
    os.chmod(project.root / "templates" / "secret", 0o700)
    project.run()
    assert stat.S_IMODE((project.out / "secret").stat().st_mode) == 0o700


def test_output_through_symlink_outside_target_is_refused(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project.out.mkdir()
    (project.out / "etc").symlink_to(outside)
    project.template("etc/t.tmpl", "x")
    with pytest.raises(TemplateError, match="outside"):
        project.run()
    assert list(outside.iterdir()) == []


def test_missing_templates_dir_renders_nothing(project: Project) -> None:
    project.attributes("a.yml", "default: {a: 1}")
    assert project.run() == []


def test_trace_shows_each_rendered_file(project: Project) -> None:
    project.template("t.tmpl", "content here")
    seen: list[str] = []
    project.run(trace=seen.append)
    assert any(str(project.out.resolve() / "t") in block and "content here" in block for block in seen)


def test_render_tree_returns_written_paths_in_order(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "b").mkdir(parents=True)
    (templates / "b" / "x.tmpl").write_text("{{ v }}")
    (templates / "a.tmpl").write_text("{{ v }}")
    written = render_tree(templates, {"v": 1}, tmp_path / "out")
    assert written == [(tmp_path / "out" / "a").resolve(), (tmp_path / "out" / "b" / "x").resolve()]
