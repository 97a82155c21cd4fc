"""Rendering: the Jinja2 environment, template files and their ``.cfg``.

A file under ``templates/`` is a template when its name ends in ``.tmpl`` (output: the name
without it) or contains ``.tmpl.`` and does not end in ``.cfg`` (``resolv.tmpl.conf`` →
``resolv.conf``). Every other file is only there to be included or imported. ``X.cfg`` next
to template ``X`` sets the output's ``uid``, ``gid``, ``mode`` and a ``checkCmd``.

Every template is rendered before anything is written, so a failing template leaves every
output untouched; then dgr.templater.output writes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import CodeType
from typing import Any, NamedTuple, NoReturn

from jinja2 import Environment, FileSystemLoader, Template, Undefined
from jinja2.bccache import Bucket, BytecodeCache
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError

from dgr.errors import AttributesError, DgrError, TemplateError
from dgr.templater.functions import FUNCTIONS, filters
from dgr.templater.output import Output, write_outputs
from dgr.templater.values import FunctionError, NeedsResolution, format_value, resolved
from dgr.templater.yamlio import yaml_loader

Trace = Callable[[str], None]
"""Receives blocks of text to show at trace level (a rendered file, the attribute tree)."""

CFG_KEYS = ("uid", "gid", "mode", "checkCmd")


# --- missing values ----------------------------------------------------------------------------


class MissingValueError(UndefinedError):
    """A template used the value of an attribute that does not exist; ``name`` is its key."""

    def __init__(self, message: str, name: str | None) -> None:
        super().__init__(message)
        self.name = name


class MissingValue(Undefined):
    """Jinja's value for a missing attribute: absent for tests, an error for output.

    ``if x``, ``x is defined``, ``x | default(d)``, ``orDef(x, d)``, ``x == y`` see it as a
    plain absence (false, not equal). Printing it, iterating it, taking its length, looking
    inside it or calculating with it raises :class:`MissingValueError`.
    """

    __slots__ = ()

    def _fail_with_undefined_error(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        name = self._undefined_name
        if self._undefined_hint:
            message = self._undefined_hint
        elif name is None:
            message = "missing value"
        else:
            message = f"missing attribute '{name}'"
        raise MissingValueError(message, name)

    # Undefined binds these to its own method at class creation: rebind them to ours.
    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = __pow__ = __rpow__ = _fail_with_undefined_error
    __call__ = __getitem__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error
    __int__ = __float__ = __complex__ = _fail_with_undefined_error
    __str__ = __iter__ = __len__ = __contains__ = _fail_with_undefined_error


# --- the environment -------------------------------------------------------------------------

# Jinja tests that look at a value's type: an unresolved attribute template must be resolved
# before they answer (see functions.Pending).
_TYPE_TESTS = (
    "none",
    "string",
    "mapping",
    "sequence",
    "iterable",
    "number",
    "integer",
    "float",
    "boolean",
    "true",
    "false",
    "odd",
    "even",
    "divisibleby",
    "eq",
    "ne",
    "in",
)


class Precompiled(BytecodeCache):
    """What the build computed for a start that renders (see dgr.templater.prepared):
    template code, used for a template loaded under the name, from the file and with the
    source it was compiled from (as Jinja2's bytecode cache); the code of attribute templates;
    the options of ``.cfg`` files by their text. Anything else is computed as usual."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, str, CodeType]] = {}  # name -> (file, source, code)
        self.strings: dict[str, CodeType] = {}  # attribute template -> code
        self.options: dict[str, tuple[int | None, int | None, int | None, str | None]] = {}

    def get_bucket(self, environment: Environment, name: str, filename: str | None, source: str) -> Bucket:
        bucket = Bucket(environment, name, "")
        known = self.files.get(name)
        if known is not None and known[:2] == (filename, source):
            bucket.code = known[2]
        return bucket

    def set_bucket(self, bucket: Bucket) -> None:
        pass  # nothing is stored at start


PRECOMPILED = Precompiled()
"""Filled by the templater's run at container start (dgr.templater.prepared.use_compiled);
empty anywhere else, where everything is computed."""


def make_environment(loader_root: Path | None = None) -> Environment:
    """A Jinja2 environment with dgr's functions, printing rules and missing-value rules.

    loader_root, when given, is where ``include``/``import``/``extends`` names are looked up
    (``templates/``), whatever the directory of the including template.
    """
    env = Environment(
        loader=FileSystemLoader(str(loader_root)) if loader_root is not None else None,
        bytecode_cache=PRECOMPILED if PRECOMPILED.files else None,
        undefined=MissingValue,
        finalize=format_value,
        keep_trailing_newline=True,  # a template's own final newline is the author's choice
        autoescape=False,
        auto_reload=False,
    )
    env.globals.update(FUNCTIONS)
    env.filters.update(filters(env.filters))
    for name in _TYPE_TESTS:
        env.tests[name] = _resolving(env.tests[name])
    return env


def _resolving(test: Any) -> Callable[..., bool]:
    def guarded(value: Any, *args: Any) -> bool:
        return bool(test(resolved(value), *args))

    return guarded


def context_of(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Template variables: every top-level attribute, plus ``attrs`` for the whole tree
    (for keys that are not identifiers: ``attrs["my-key"]``). An attribute named ``attrs``
    wins over the latter."""
    return {"attrs": attributes, **attributes}


def compile_template(env: Environment, text: str, name: str) -> Template:
    """Compile text as template `name`; a syntax error is a TemplateError with name/line."""
    try:
        code = env.compile(text, name=name, filename=name)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc, name) from None
    return env.template_class.from_code(env, code, env.make_globals(None))


def render_string(
    text: str, attributes: Mapping[str, Any], *, name: str, templates_dir: Path | None = None
) -> str:
    """Render text with the attributes as variables; `name` (a file path) is used in errors.

    A missing attribute used in output, a syntax error or a failing function is a
    :class:`TemplateError` naming the file, line and (for a missing value) the attribute.
    templates_dir, when given, is the root for ``include``/``import``.
    """
    env = make_environment(templates_dir)
    template = compile_template(env, text, name)
    return render_template(template, attributes, name=name, sources={name: text})


def render_template(
    template: Template, attributes: Mapping[str, Any], *, name: str, sources: Mapping[str, str] | None = None
) -> str:
    """Render a compiled template; errors become TemplateError with file/line (see above)."""
    try:
        return template.render(context_of(attributes))
    except NeedsResolution:
        raise
    except Exception as exc:
        raise _render_error(exc, name, sources or {}, TemplateError) from None


# --- errors ----------------------------------------------------------------------------------


def _syntax_error(exc: TemplateSyntaxError, fallback: str, cls: type[DgrError] = TemplateError) -> DgrError:
    return cls(
        f"template syntax error: {exc.message}", path=exc.filename or exc.name or fallback, line=exc.lineno
    )


def _render_error(
    exc: Exception, fallback: str, sources: Mapping[str, str], cls: type[DgrError], key: str | None = None
) -> DgrError:
    """The DgrError for an exception raised while rendering, located in the template."""
    if isinstance(exc, TemplateSyntaxError):  # from an included/imported file
        return _syntax_error(exc, fallback, cls)
    if isinstance(exc, DgrError):
        return exc
    path, line = _locate(exc)
    path = path or fallback
    hint = None
    if isinstance(exc, MissingValueError):
        source = _source_line(path, line, sources)
        message = f"missing attribute '{_qualify(exc.name, source)}'" if exc.name else exc.message or ""
        hint = "define it in an attribute file, or test it with `is defined` / `default(...)`"
    elif isinstance(exc, TemplateNotFound):
        message = f"included template not found: {exc.name}"
    elif isinstance(exc, (FunctionError, UndefinedError)):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if cls is AttributesError:
        return cls(f"cannot render attribute template: {message}", key=key, hint=hint)
    return cls(message, path=path, line=line, key=key, hint=hint)


def _locate(exc: BaseException) -> tuple[str | None, int | None]:
    """File and line of the innermost template frame (Jinja rewrites tracebacks so that
    template frames carry the template's file name and line)."""
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _source_line(path: str, line: int | None, sources: Mapping[str, str]) -> str:
    if line is None:
        return ""
    text = sources.get(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _qualify(name: str | None, source_line: str) -> str:
    """``dns.foo`` rather than ``foo`` when the source line shows the path leading to it."""
    if not name:
        return ""
    step = rf"(?:\.{re.escape(name)}\b|\[\s*['\"]{re.escape(name)}['\"]\s*\])"
    match = re.search(rf"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]]*\])*?){step}", source_line)
    return f"{match.group(1)}.{name}" if match else name


# --- attribute templates ---------------------------------------------------------------------


class AttributeRenderer:
    """Renders attribute values that are templates, against a tree that changes as they
    resolve (see dgr.templater.attributes.resolve_attribute_templates)."""

    def __init__(self, tree: Mapping[str, Any]) -> None:
        self._tree = tree
        self._env = make_environment()
        self._compiled: dict[str, Template] = {}

    def render(self, source: str, *, key: str) -> str:
        """The rendered text; NeedsResolution when it uses an unresolved value; otherwise
        any failure is an AttributesError naming the key."""
        template = self._compiled.get(source)
        if template is None:
            code = PRECOMPILED.strings.get(source)
            try:
                if code is not None:
                    template = self._env.template_class.from_code(
                        self._env, code, self._env.make_globals(None)
                    )
                else:
                    template = self._env.from_string(source)
            except TemplateSyntaxError as exc:
                raise AttributesError(f"template syntax error: {exc.message}", key=key) from None
            self._compiled[source] = template
        try:
            return template.render(context_of(self._tree))
        except NeedsResolution:
            raise
        except Exception as exc:
            raise _render_error(exc, key, {"<template>": source}, AttributesError, key=key) from None


# --- template files --------------------------------------------------------------------------


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
