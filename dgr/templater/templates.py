"""Template files: which files under ``templates/`` are templates, their ``.cfg``, all rendered.

A file under ``templates/`` is a template when its name ends in ``.tmpl`` (output: the name
without it) or contains ``.tmpl.`` and does not end in ``.cfg`` (``resolv.tmpl.conf`` →
``resolv.conf``). Every other file is only there to be included or imported. ``X.cfg`` next
to template ``X`` sets the output's ``uid``, ``gid``, ``mode`` and a ``checkCmd``.

Every template is rendered (dgr/templater/render.py) before anything is written, so a
failing template leaves every output untouched; then dgr.templater.output writes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment
from jinja2.exceptions import TemplateSyntaxError

from dgr.errors import DgrError, TemplateError
from dgr.templater.output import Output, write_outputs
from dgr.templater.render import PRECOMPILED, _syntax_error, make_environment, render_template
from dgr.templater.yamlio import yaml_loader

Trace = Callable[[str], None]
"""Receives blocks of text to show at trace level (a rendered file, the attribute tree)."""

CFG_KEYS = ("uid", "gid", "mode", "checkCmd")


class TemplateFile(NamedTuple):
    """A template found under templates/ (a NamedTuple: cheaper to import than dataclasses)."""

    source: Path
    name: str  # loader name: path relative to templates/, with slashes
    output: str  # output path relative to the target root, with slashes
    cfg: Path | None  # its options file, when there is one


class OutputOptions(NamedTuple):
    """What a ``.cfg`` file says about an output; None means "leave as is"."""

    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    check_cmd: str | None = None


def output_name(filename: str) -> str | None:
    """The name a template file renders to, or None when the file is not a template."""
    if filename.endswith(".cfg"):
        return None
    if filename.endswith(".tmpl"):
        return filename[: -len(".tmpl")] or None
    if ".tmpl." in filename:
        return filename.replace(".tmpl.", ".", 1)
    return None


def find_templates(templates_dir: Path) -> list[TemplateFile]:
    """Every template under templates_dir, sorted by path. Names starting with ``..``
    (ConfigMap internals) are skipped; directory symlinks are not followed. Two templates
    with the same output (``a.tmpl.conf``, ``a.conf.tmpl``) are a TemplateError."""
    found: list[TemplateFile] = []

    def walk(folder: Path, rel: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".."):
                continue
            name = f"{rel}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), name + "/")
                continue
            out = output_name(entry.name)
            if out is None or not entry.is_file():
                continue
            cfg = Path(entry.path + ".cfg")
            found.append(TemplateFile(Path(entry.path), name, f"{rel}{out}", cfg if cfg.is_file() else None))

    if templates_dir.is_dir():
        walk(templates_dir, "")
    outputs: dict[str, TemplateFile] = {}
    for template in found:
        other = outputs.setdefault(template.output, template)
        if other is not template:
            raise TemplateError(
                f"{other.name} and {template.name} both render to {template.output}", path=template.source
            )
    return found


def read_options(cfg: Path) -> OutputOptions:
    """Parse a template's ``.cfg``: ``uid``/``gid`` (ints), ``mode`` (octal, as written:
    ``0644``, ``644``, ``"0o644"`` all mean rw-r--r--), ``checkCmd`` (a shell command).
    Unknown keys or bad values are a TemplateError naming the file."""
    try:
        text = cfg.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template options: {exc}", path=cfg) from None
    known = PRECOMPILED.options.get(text)
    if known is not None:
        return OutputOptions(*known)
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml_loader())  # noqa: S506 - a SafeLoader
        data = yaml.load(text, Loader=yaml_loader())  # noqa: S506
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise TemplateError(f"invalid YAML: {exc.problem}", path=cfg, line=line) from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"cannot read template options: {exc}", path=cfg) from None
    if data is None:
        return OutputOptions()
    if not isinstance(data, dict):
        raise TemplateError("a template .cfg must be a map (uid, gid, mode, checkCmd)", path=cfg)
    unknown = sorted(set(data) - set(CFG_KEYS))
    if unknown:
        raise TemplateError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(CFG_KEYS)}", path=cfg)
    raw_mode = _raw_scalar(node, "mode")
    return OutputOptions(
        uid=_id_option(data.get("uid"), "uid", cfg),
        gid=_id_option(data.get("gid"), "gid", cfg),
        mode=_mode_option(raw_mode, data.get("mode"), cfg),
        check_cmd=_check_option(data.get("checkCmd"), cfg),
    )


def _raw_scalar(node: Any, key: str) -> str | None:
    """The text of a scalar as written in the file (``0644`` stays "0644")."""
    import yaml

    for key_node, value_node in getattr(node, "value", ()):
        if key_node.value == key and isinstance(value_node, yaml.ScalarNode):
            return str(value_node.value)
    return None


def _id_option(value: Any, key: str, cfg: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise TemplateError(f"{key} must be a number (0 or more), not {value!r}", path=cfg, key=key)


def _mode_option(raw: str | None, value: Any, cfg: Path) -> int | None:
    if value is None:
        return None
    text = (raw or "").strip().lower().removeprefix("0o")
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise TemplateError(f"mode must be octal digits like 0644, not {raw!r}", path=cfg, key="mode")
    return mode


def _check_option(value: Any, cfg: Path) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TemplateError("checkCmd must be a shell command (a string)", path=cfg, key="checkCmd")
    return value


def render_tree(
    templates_dir: Path,
    attributes: Mapping[str, Any],
    target_root: Path,
    *,
    check_shell: Sequence[str] | None = None,
    run_checks: bool = True,
    trace: Trace | None = None,
    keep_going: bool = False,
) -> list[Path]:
    """Render every template under templates_dir into target_root; return the written paths.

    All templates (and their .cfg) are rendered first: on any error nothing is written —
    unless `keep_going` (``dgr try``): then the templates that rendered are written, and the
    error raised afterwards names every template that failed.
    Then the outputs are written (see :func:`dgr.templater.output.write_outputs`: atomic,
    .cfg ownership and mode, checkCmd with `check_shell` unless run_checks is false, e.g.
    when rendering on the host for ``dgr try``).
    """
    outputs, errors = render_templates(templates_dir, attributes, keep_going=keep_going)
    written = write_outputs(
        str(templates_dir),
        str(target_root),
        outputs,
        check_shell=check_shell,
        run_checks=run_checks,
        trace=trace,
    )
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TemplateError(
            f"{len(errors)} templates failed to render (the others were written)",
            path=templates_dir,
            details="\n".join(str(e) for e in errors),
        )
    return [Path(path) for path in written]


def render_templates(
    templates_dir: Path,
    attributes: Mapping[str, Any],
    *,
    env: Environment | None = None,
    keep_going: bool = False,
) -> tuple[list[Output], list[DgrError]]:
    """Render every template under templates_dir (and read its .cfg), writing nothing.

    Returns the outputs, in path order, and the errors: the first error raises, unless
    `keep_going`. `env` defaults to :func:`make_environment` over templates_dir.
    """
    env = env or make_environment(templates_dir)
    outputs: list[Output] = []
    errors: list[DgrError] = []
    for template in find_templates(templates_dir):
        try:
            options = read_options(template.cfg) if template.cfg else OutputOptions()
            content = _render_file(env, template, attributes)
        except DgrError as exc:
            if not keep_going:
                raise
            errors.append(exc)
            continue
        source = str(template.source)
        outputs.append(Output(source, template.output, content, *options))
    return outputs, errors


def _render_file(env: Environment, template: TemplateFile, attributes: Mapping[str, Any]) -> str:
    try:
        compiled = env.get_template(template.name)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc, str(template.source)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template: {exc}", path=template.source) from None
    return render_template(compiled, attributes, name=str(template.source))
