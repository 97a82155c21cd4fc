"""dgr/staging.py: no symlink followed out of the project; inputs read at build time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dgr.errors import AttributesError, TemplateError
from dgr.staging import LinkOutError, check_inputs, refuse_links_out, stage_project
from tests.support.files import write_tree


def test_links_inside_the_project_are_staged_as_what_they_point_to(tmp_path: Path) -> None:
    project = write_tree(
        tmp_path / "aci-x",
        {
            "shared/base.yml": "default: {a: 1}\n",
            "shared/motd": "hello {{ a }}\n",
            "shared/hook.sh": "#!/bin/sh\n",
        },
    )
    for rel, target in {
        "attributes/base.yml": "../shared/base.yml",
        "templates/etc/motd.tmpl": "../../shared/motd",
        "runlevels/prestart-early/10.hook.sh": "../../shared/hook.sh",
    }.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, project / rel)
    check_inputs(project)
    stage = stage_project(project, tmp_path / "stage", "x", [])
    assert (stage / "dgr/attributes/x/base.yml").read_text() == "default: {a: 1}\n"
    motd = stage / "dgr/templates/etc/motd.tmpl"
    assert not motd.is_symlink() and motd.read_text() == "hello {{ a }}\n"
    assert not (stage / "dgr/runlevels/prestart-early/10.hook.sh").is_symlink()


@pytest.mark.parametrize(
    ("link", "target", "message"),
    [
        ("templates/etc/x.tmpl", "/etc/passwd", r"a symlink to '/etc/passwd', outside the project"),
        ("templates/up", "../../..", r"a symlink to '../../..', outside the project"),
        ("templates/gone.tmpl", "nothere", r"a symlink to 'nothere', which does not exist"),
        ("templates/loop", "../templates", r"a symlink to a folder that holds it"),
        ("templates/a", "b", r"a symlink loop"),
    ],
)
def test_links_out_are_refused_naming_the_link(tmp_path: Path, link: str, target: str, message: str) -> None:
    project = write_tree(tmp_path / "aci-x", {"templates/ok.tmpl": "ok\n"})
    (project / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, project / link)
    if link == "templates/a":
        os.symlink("a", project / "templates/b")
    with pytest.raises(LinkOutError, match=message) as raised:
        refuse_links_out(project, project / "templates")
    assert raised.value.path == str(project / link)


def test_check_inputs_reads_templates_partials_cfg_and_attributes(tmp_path: Path) -> None:
    project = write_tree(
        tmp_path / "aci-x",
        {
            "templates/x.tmpl": "{{ missing_is_fine_at_build }}\n",
            "templates/x.tmpl.cfg": "mode: 0644\nuid: 0\n",
            "templates/m.partial": "{% macro m() %}x{% endmacro %}\n",
            "templates/data.bin": "not a template: {{ never parsed\n",
            "attributes/a.yml": 'default:\n  b: "{{ a }}"\n',
        },
    )
    check_inputs(project)
    (project / "templates/m.partial").write_text("{% macro m() %}\n")
    with pytest.raises(TemplateError, match="template syntax error") as raised:
        check_inputs(project)
    assert raised.value.path == str(project / "templates/m.partial")
    (project / "templates/m.partial").unlink()
    (project / "attributes/a.yml").write_text("default: 5\n")
    with pytest.raises(AttributesError, match="'default:' must be a map"):
        check_inputs(project)
