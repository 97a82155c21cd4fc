"""The templater: attributes + Jinja2 templates → configuration files.

Used in three places: at container start (``python -m dgr.templater /dgr``, see
``__main__``), by ``dgr try`` (render a project's templates into ``target/try/``) and by the
build (``render_string`` for ``aci-manifest.yml``, and ``prepared`` for what a container
start can skip). docs/templating.md is the user guide.

The names below are imported on first use: a container start that finds its run prepared
(see ``prepared``) must not pay for Jinja2, PyYAML or pathlib.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from dgr.templater.output import default_check_shell
    from dgr.templater.render import make_environment, render_string
    from dgr.templater.templates import Trace, find_templates, output_name, render_tree
    from dgr.templater.values import format_value

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

_HOMES = {
    "format_value": "dgr.templater.values",
    "default_check_shell": "dgr.templater.output",
    **dict.fromkeys(("make_environment", "render_string"), "dgr.templater.render"),
    **dict.fromkeys(("Trace", "find_templates", "output_name", "render_tree"), "dgr.templater.templates"),
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(home, fromlist=[name]), name)
    globals()[name] = value
    return value


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
    defaults to os.environ; see dgr.templater.attributes.env_override for override_var),
    resolve attribute templates, and render templates_dir into target_root (see render_tree).

    Returns the written paths ([] when templates_dir does not exist). Raises
    AttributesError or TemplateError; on a rendering error nothing is written.
    """
    import os

    from dgr.templater.attributes import collect_attribute_files, load_attributes
    from dgr.templater.templates import render_tree

    attributes = load_attributes(
        collect_attribute_files(attr_dir), os.environ if env is None else env, override_var=override_var
    )
    if trace is not None:
        from dgr.templater.functions.encoding import to_json

        trace(f"attributes:\n{to_json(attributes)}")
    if not templates_dir.is_dir():
        return []
    return render_tree(
        templates_dir, attributes, target_root, check_shell=check_shell, run_checks=run_checks, trace=trace
    )
