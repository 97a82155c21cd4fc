"""`dgr try`: render a project's templates with its attributes, without building.

The output goes to `target/try/` (the same paths the templater would write at start) and
each rendered file is printed. Attribute overrides from `TEMPLATER_OVERRIDE` /
`TEMPLATER_OVERRIDE_BASE64` in the environment are honoured; `checkCmd`s are not run
(they are meant for the image, not for the host).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from dgr.build import BuildOptions
from dgr.manifest import load_manifest
from dgr.workspace import Workspace, target_dir


def render_project_templates(project: Path, out: Path, env: Mapping[str, str]) -> list[Path]:
    """Render `project/templates` with `project/attributes` (and `env`'s override) into `out`."""
    from dgr.templater import run

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return run(project / "attributes", project / "templates", out, env, run_checks=False)


def try_templates(project: Path, options: BuildOptions, show: Callable[[str], None] = print) -> Path:
    """Render into `<target>/try/` and show each rendered file; returns the output folder."""
    manifest = load_manifest(project)
    out = Workspace(target_dir(manifest, options.config, options.targets_root)).target / "try"
    for path in render_project_templates(project, out, os.environ):
        show(f"--- {path.relative_to(out)}")
        show(path.read_text(errors="replace").rstrip("\n"))
    return out
