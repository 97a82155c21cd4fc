"""Rendering: the Jinja2 environment, template strings, attribute templates, and their errors.

The environment has dgr's functions (dgr/templater/functions/), its printing rules
(dgr/templater/values.py) and its rules for missing values: a missing attribute is an absence
for tests and an error, naming it, for output. Errors name the template, the line and the
source line. The template files under ``templates/`` are found and rendered by
dgr/templater/templates.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any, NoReturn

from jinja2 import Environment, FileSystemLoader, Template, Undefined
from jinja2.bccache import Bucket, BytecodeCache
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError

from dgr.errors import AttributesError, DgrError, TemplateError
from dgr.templater.functions import FUNCTIONS, filters
from dgr.templater.values import FunctionError, NeedsResolution, format_value, resolved


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
