"""`dgr try`: render a project's templates with its attributes, without building.

The output goes to `target/try/` (the same paths the templater would write at start) and
each rendered file is printed. The attributes are the dependencies' (resolved as a build
would: the project's plan builds local dependencies first), then the project's, then the overrides
from `TEMPLATER_OVERRIDE` / `TEMPLATER_OVERRIDE_BASE64` in the environment. `checkCmd`s are
not run (they are meant for the image, not for the host).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from dgr.images import flatten
from dgr.options import BuildOptions
from dgr.plan import carry_out, make_plan
from dgr.staging import refuse_links_out
from dgr.templater import render_tree
from dgr.templater.attributes import collect_attribute_files, load_attributes
from dgr.workspace import Workspace, target_dir


def render_project_templates(
    project: Path, out: Path, env: Mapping[str, str], below: tuple[Path, ...] = ()
) -> list[Path]:
    """Render `project/templates` into `out` with the attributes of the layers `below`
    (bottom first), then `project/attributes`, then `env`'s override."""

    for folder in ("attributes", "templates"):  # as the build: no link followed out of the project
        refuse_links_out(project, project / folder)
    files = [f for layer in below for f in collect_attribute_files(layer / "dgr" / "attributes")]
    files += collect_attribute_files(project / "attributes")
    attributes = load_attributes(files, env)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not (project / "templates").is_dir():
        return []
    return render_tree(project / "templates", attributes, out, run_checks=False, keep_going=True)


def try_templates(project: Path, options: BuildOptions, show: Callable[[str], None] = print) -> Path:
    """Render into `<target>/try/` and show each rendered file; returns the output folder."""
    plan = make_plan(project, options.config)
    node = plan[plan.roots[0]]
    assert node.manifest is not None
    deps = flatten(carry_out(plan, options, upto=node.aci).dependencies(node.aci))
    out = Workspace(target_dir(node.manifest, options.config, options.targets_root)).target / "try"
    for path in render_project_templates(project, out, os.environ, tuple(d.layer for d in deps)):
        show(f"--- {path.relative_to(out)}")
        show(path.read_text(errors="replace").rstrip("\n"))
    return out
