"""Values as template functions take and print them.

Values reach the functions straight from YAML/JSON: dicts, lists, str, int, float, bool,
None — or a Jinja ``Undefined`` when a template names a missing attribute, or a
:class:`Pending` attribute whose own template is not rendered yet. :func:`format_value` is
how ``{{ ... }}`` prints a value; the helpers below take arguments (a missing attribute fails
with its name, a pending one asks to be resolved first) for dgr/templater/functions/.

Imported at every container start that renders: keep the imports to what Jinja2 loads anyway.
"""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any, NoReturn

from jinja2 import Undefined


class FunctionError(Exception):
    """A template function was called with arguments it cannot use; the message says why."""


# --- values whose attribute template is not resolved yet --------------------------------------


class NeedsResolution(Exception):  # noqa: N818 - a signal, not a failure
    """Raised when a template touches an attribute whose own template is not resolved yet.

    Deliberately not an AttributeError/TypeError/LookupError: Jinja2 swallows those while
    looking attributes up, and this signal must reach the resolver.
    """

    def __init__(self, path: tuple[str | int, ...]) -> None:
        super().__init__(path)
        self.path = path


class Pending:
    """Stands in the attribute tree for an attribute template that is not rendered yet.

    Any use of its value (printing, comparing, iterating, testing its type...) raises
    :class:`NeedsResolution`, so the resolver renders that attribute first and retries.
    Only ``is defined`` sees it without asking, and rightly answers true.
    """

    __slots__ = ("path",)

    def __init__(self, path: tuple[str | int, ...]) -> None:
        self.path = path

    def _need(self, *_args: object) -> NoReturn:
        raise NeedsResolution(self.path)

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NeedsResolution(self.path)

    def __repr__(self) -> str:
        return f"<pending attribute {self.path!r}>"

    __str__ = __format__ = __iter__ = __len__ = __bool__ = __contains__ = _need
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _need
    __getitem__ = __call__ = __int__ = __float__ = _need
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _need
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _need


def resolved(value: Any) -> Any:
    """Return value, or signal that it is a :class:`Pending` attribute to resolve first."""
    if isinstance(value, Pending):
        raise NeedsResolution(value.path)
    return value


# --- printing --------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """Text for a value printed by ``{{ ... }}``: the way people write it in config files.

    Strings as-is; ``true``/``false``; ints in full (1000000, never 1e+06); floats in their
    shortest exact form without exponent (1.5, 0.00001); ``None`` (a YAML null) as an empty
    string; lists and maps as compact JSON (``["a", "b"]``, ``{"k": 1}``), which is also
    valid YAML so an attribute template that prints a list reads back as that list.
    A missing attribute raises (through its Undefined).
    """
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, (Mapping, list, tuple)):
        return _json.dumps(to_plain(value), ensure_ascii=False, default=_json_fallback)
    return str(value)


def _format_float(value: float) -> str:
    text = repr(value)
    if "e" not in text or value != value or value in (float("inf"), float("-inf")):
        return text
    # repr() switches to exponent notation for big/small magnitudes; config files want digits.
    return _without_exponent(text)


def _without_exponent(text: str) -> str:
    """`1.5e+16` → `15000000000000000`, `1e-07` → `0.0000001`: the same digits, no exponent."""
    mantissa, _, exponent = text.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    whole, _, fraction = mantissa.lstrip("-").partition(".")  # repr(): one non-zero digit before "."
    digits = whole + fraction
    point = len(whole) + int(exponent)
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def to_plain(value: Any) -> Any:
    """A copy of value made only of dict/list/str/int/float/bool/None, for JSON and YAML.

    Tuples become lists, map keys become strings, a missing attribute raises with its name,
    and any other object becomes its printed text (a date prints as its ISO form).
    """
    value = resolved(value)
    if isinstance(value, Undefined):
        _fail_undefined(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)  # drops a Markup subclass
    if isinstance(value, Mapping):
        return {_key_text(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else format_value(key)


def _json_fallback(value: Any) -> str:
    return format_value(value)


def _fail_undefined(value: Undefined) -> NoReturn:
    value._fail_with_undefined_error()
    raise AssertionError("unreachable")  # pragma: no cover


def _absent(value: Any) -> bool:
    value = resolved(value)
    return value is None or isinstance(value, Undefined)


def _present(value: Any, name: str) -> Any:
    """value itself; a missing attribute fails with its own name, a Pending asks to resolve."""
    value = resolved(value)
    if isinstance(value, Undefined):
        _fail_undefined(value)
    return value


def _text(value: Any, name: str) -> str:
    return format_value(_present(value, name))


# --- kinds of values, and numbers as arguments ------------------------------------------------

_KINDS: tuple[tuple[type | tuple[type, ...], tuple[str, ...]], ...] = (
    (bool, ("bool",)),
    (int, ("int", "int64", "float64", "number")),  # the original saw every number as float64
    (float, ("float64", "float", "number")),
    (str, ("string", "str")),
    (Mapping, ("map", "map[string]interface {}", "dict")),
    ((list, tuple), ("slice", "[]interface {}", "list", "array")),
)


def _kind_names(value: Any) -> tuple[str, ...]:
    if _absent(value):
        return ("invalid", "nil", "<nil>", "none")
    for types, names in _KINDS:
        if isinstance(value, types):
            return names
    return (type(value).__name__,)


def _kind(value: Any) -> str:
    return _kind_names(value)[0]


def _number(value: Any, name: str) -> int | float:
    value = _present(value, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value.strip())
            except ValueError:
                pass
    raise FunctionError(f"{name}: expected a number, got {_kind(value)} {value!r}")
