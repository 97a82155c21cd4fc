"""The templater: attributes + Jinja2 templates → configuration files.

Used in three places: at container start (``python -m dgr.templater /dgr``, see
``__main__``), by ``dgr try`` (render a project's templates into ``target/try/``) and by the
build (``render_string`` for ``aci-manifest.yml``). docs/templating.md is the user guide.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dgr.attributes import collect_attribute_files, load_attributes
from dgr.templater.functions import format_value
from dgr.templater.render import (
    Trace,
    default_check_shell,
    find_templates,
    make_environment,
    output_name,
    render_string,
    render_tree,
)

__all__ = [
    "Trace",
    "default_check_shell",
    "find_templates",
    "format_value",
    "make_environment",
    "output_name",
    "render_string",
    "render_tree",
    "run",
]


def run(
    attr_dir: Path,
    templates_dir: Path,
    target_root: Path,
    env: Mapping[str, str] | None = None,
    *,
    override_var: str | None = None,
    check_shell: Sequence[str] | None = None,
    run_checks: bool = True,
    trace: Trace | None = None,
) -> list[Path]:
    """Collect and merge attributes from attr_dir, apply the environment override (env
    defaults to os.environ; see dgr.attributes.env_override for override_var), resolve
    attribute templates, and render templates_dir into target_root (see render_tree).

    Returns the written paths ([] when templates_dir does not exist). Raises
    AttributesError or TemplateError; on a rendering error nothing is written.
    """
    attributes = load_attributes(
        collect_attribute_files(attr_dir), os.environ if env is None else env, override_var=override_var
    )
    if trace is not None:
        from dgr.templater.functions import to_json

        trace(f"attributes:\n{to_json(attributes)}")
    if not templates_dir.is_dir():
        return []
    return render_tree(
        templates_dir, attributes, target_root, check_shell=check_shell, run_checks=run_checks, trace=trace
    )
