"""The manifest as a Jinja2 template: rendered with attributes, or before the build.

The manifest is read twice: before the build with no attributes (a version that depends on
a missing attribute is dropped, as in the original) and after the build runlevels with the
attributes that scripts wrote (see build.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgr.errors import ManifestError
from dgr.templater import format_value, make_environment, render_string
from dgr.yamlload import parse_yaml

NO_VALUE = "<no value>"


def is_templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def render_manifest(text: str, path: Path, attributes: dict[str, Any]) -> str:
    """Render the manifest template with `attributes`: a missing one is an error."""

    return render_string(text, attributes, name=str(path))


# --- the render before the build ----------------------------------------------------------------
#
# Before the build, the attributes that build scripts write to /dgr/builder/attributes are
# unknown. They are rendered as an `Unknown`: printed, it is `<no value>`; any function or
# filter given one returns it unchanged, so `replace`, `trimSuffix`, `x.split('-')[0]` work
# on it. Whether the output depends on one is found by rendering twice: once with every
# unknown attribute absent (tests and `if` say no, `default()` gives its fallback: the text
# that is used), once with every one present (tests and `if` say yes, `default()` keeps the
# unknown). Where the two `name`s differ, or one holds `<no value>`, the version is unknown
# before the build and dropped, as the original dropped a version holding `<no value>`.


class _Touched(Exception):  # noqa: N818 - a signal, caught by the function wrappers
    """A function looked at an unknown value (more than asking whether it exists)."""


@dataclass(frozen=True)
class BeforeBuild:
    """The manifest rendered before the build (see the comment above)."""

    text: str  # rendered with every build-time attribute absent
    version_unknown: bool  # the version in `name` depends on a build-time attribute
    name_unknown: bool  # so does the name itself, which is an error


def render_before_build(text: str, path: Path) -> BeforeBuild:
    """Render the manifest template before the build, with no attribute known yet."""
    template = _UnknownTemplate(text, path)
    absent = template.render(present=False)
    if not template.used_unknown:
        return BeforeBuild(absent, version_unknown=False, name_unknown=False)
    try:
        present = template.render(present=True)
    except ManifestError:
        present = ""  # cannot tell: take the version as unknown
    name_absent, version_absent = _name_parts(absent)
    name_present, version_present = _name_parts(present)
    name_unknown = NO_VALUE in name_absent or (bool(present) and name_absent != name_present)
    version_unknown = NO_VALUE in version_absent or (name_absent, version_absent) != (
        name_present,
        version_present,
    )
    return BeforeBuild(absent, version_unknown, name_unknown)


def _name_parts(text: str) -> tuple[str, str]:
    """The name and version of the rendered manifest `text` ('' when it cannot tell)."""
    try:
        data = parse_yaml(text, "", ManifestError)
    except ManifestError:
        return "", ""
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        return "", ""
    base, _, version = name.strip().partition(":")
    return base, version


class _UnknownTemplate:
    """The manifest template compiled once, rendered with every attribute unknown, taken as
    absent or as present (see the comment above)."""

    def __init__(self, text: str, path: Path) -> None:
        import jinja2

        self.path = path
        self.unknown = unknown = _unknown_class()
        env = make_environment()
        env.undefined = unknown
        env.finalize = functools.partial(_finalize, unknown)
        for table in (env.filters, env.globals):
            for key, fn in list(table.items()):
                if callable(fn) and not isinstance(fn, type):
                    table[key] = _tolerant(fn, unknown)
        for key, test in list(env.tests.items()):
            env.tests[key] = _answering(test, key, unknown)
        try:
            self.template = env.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise ManifestError(f"template error: {exc.message}", path=path, line=exc.lineno) from None

    @property
    def used_unknown(self) -> bool:
        """Whether a render so far used an attribute."""
        return bool(self.unknown.created)

    def render(self, *, present: bool) -> str:
        self.unknown.present = present
        try:
            return self.template.render()
        except Exception as exc:
            raise ManifestError(f"template error: {exc}", path=self.path) from None


def _unknown_class() -> Any:
    """A new class for unknown values (Jinja's Undefined for missing attributes), holding
    the state of one template: which render runs, whether one was used."""
    import jinja2

    class Unknown(jinja2.Undefined):
        __slots__ = ()
        present = False  # which of the two renders runs
        created = False  # whether the template used an attribute
        strict = 0  # > 0 while a function runs on it in the absent render (see _tolerant)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            Unknown.created = True
            super().__init__(*args, **kwargs)

        def _touch(self, *_args: Any, **_kwargs: Any) -> Any:
            if Unknown.strict:
                raise _Touched
            return self

        _fail_with_undefined_error = _touch

        def __getattr__(self, name: str) -> Any:
            if name[:2] == "__":
                raise AttributeError(name)
            return self._touch()

        def __str__(self) -> str:
            self._touch()
            return NO_VALUE

        def __bool__(self) -> bool:
            self._touch()
            return Unknown.present

        def __len__(self) -> int:
            self._touch()
            return 1 if Unknown.present else 0

        def __iter__(self) -> Iterator[Any]:
            self._touch()
            return iter((self,) if Unknown.present else ())

        def __contains__(self, _item: Any) -> bool:
            self._touch()
            return Unknown.present

        __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _touch
        __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _touch
        __pos__ = __neg__ = __pow__ = __rpow__ = __call__ = __getitem__ = _touch
        __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _touch
        __hash__ = jinja2.Undefined.__hash__

    return Unknown


def _unknown_in(unknown: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The first unknown among the arguments (or in a list argument), else None."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, unknown):
            return value
        if isinstance(value, (list, tuple)):
            found = next((v for v in value if isinstance(v, unknown)), None)
            if found is not None:
                return found
    return None


def _tolerant(fn: Any, unknown: Any) -> Any:
    """`fn`, returning the unknown it was given instead of failing on it. In the absent render
    it runs first, so that functions that test for absence (default, orDef...) answer."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        given = _unknown_in(unknown, args, kwargs)
        if given is None:
            return fn(*args, **kwargs)
        if unknown.present:
            return given
        unknown.strict += 1
        try:
            return fn(*args, **kwargs)
        except Exception:
            return given
        finally:
            unknown.strict -= 1

    return call


def _answering(test: Any, name: str, unknown: Any) -> Any:
    """`test`; in the present render, every test on an unknown says yes (`undefined`: no)."""

    @functools.wraps(test)
    def check(value: Any, *args: Any) -> Any:
        if unknown.present and isinstance(value, unknown):
            return name != "undefined"
        return test(value, *args)

    return check


def _finalize(unknown: Any, value: Any) -> str:

    if isinstance(value, unknown):
        return NO_VALUE
    unknown.strict += 1
    try:
        return format_value(value)
    except _Touched:  # a list or map holding an unknown
        return NO_VALUE
    finally:
        unknown.strict -= 1
