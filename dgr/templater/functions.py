"""The functions templates can call, and the rules for printing values.

Every function here is a Jinja2 global (``{{ toUpper(name) }}``); most are also filters
(``{{ name | toUpper }}``). **The subject always comes first**, so one signature serves
both spellings, and a Go pipeline ``{{ .x | trimPrefix "a" }}`` becomes
``{{ x | trimPrefix("a") }}`` unchanged apart from the brackets. dgr's own Go functions
already took the subject first (``replace s old new``, ``join list sep``); sprig helpers
whose Go argument order put it last (``trimPrefix``, ``indent``, ``regexMatch``...) take it
first here. docs/templating.md lists them all.

Values reach these functions straight from YAML/JSON: dicts, lists, str, int, float, bool,
None — or a Jinja ``Undefined`` when a template names a missing attribute. Functions that
test for absence (``orDef``, ``isNil``, ``default``...) accept ``Undefined``; every other
use of one fails with the missing attribute's name.

This module is imported at every container start that renders: keep its imports to what
Jinja2 loads anyway (PyYAML only inside the functions that need it).
"""

from __future__ import annotations

import json as _json
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from jinja2 import Undefined

from dgr.templater.yamlio import parse_yaml


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


# --- paths and strings -------------------------------------------------------------------------


def base(path: str) -> str:
    """Last element of a slash path, like Go's path.Base: ``base("/a/b/")`` → ``b``."""
    path = _text(path, "base")
    if not path:
        return "."
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


def dir_(path: str) -> str:
    """All but the last element of a slash path, like Go's path.Dir: ``dir("a/b")`` → ``a``."""
    head = posixpath.dirname(_text(path, "dir"))
    return posixpath.normpath(head) if head else "."


def clean(path: str) -> str:
    """The shortest equivalent slash path (``a/../b/`` → ``b``)."""
    return posixpath.normpath(_text(path, "clean"))


def ext(path: str) -> str:
    """The extension of the last path element, dot included (``a/b.conf`` → ``.conf``)."""
    return posixpath.splitext(base(path))[1]


def is_abs(path: str) -> bool:
    """Whether the slash path is absolute."""
    return _text(path, "isAbs").startswith("/")


def split(text: str, sep: str) -> list[str]:
    """``split(s, sep)``: the pieces of s between each sep; an empty sep splits characters."""
    text, sep = _text(text, "split"), _text(sep, "split")
    return list(text) if sep == "" else text.split(sep)


def join(items: Any, sep: str = "", attribute: str | None = None) -> str:
    """``join(list, sep)``: the items printed (like ``{{ }}`` prints them) with sep between.

    Any list works, YAML numbers included (the original needed a list of strings).
    ``attribute`` picks that key of each item, as Jinja's own join filter does.
    """
    items = _present(items, "join")
    if isinstance(items, str):
        return items
    if attribute is not None:
        items = [
            item[attribute] if isinstance(item, Mapping) else getattr(item, attribute) for item in items
        ]
    return _text(sep, "join").join(format_value(_present(item, "join")) for item in items)


def replace(text: str, old: str, new: str, count: int | None = -1) -> str:
    """``replace(s, old, new[, n])``: s with the first n (default: every) old replaced by new."""
    limit = -1 if count is None else int(count)
    return _text(text, "replace").replace(_text(old, "replace"), _text(new, "replace"), limit)


def repeat(text: str, count: int) -> str:
    """``repeat(s, n)``: s repeated n times."""
    return _text(text, "repeat") * int(_number(count, "repeat"))


def contains(haystack: Any, needle: Any) -> bool:
    """``contains(s, sub)``: whether sub occurs in string s (or is an item/key of a list/map)."""
    haystack = _present(haystack, "contains")
    if isinstance(haystack, str):
        return _text(needle, "contains") in haystack
    return _present(needle, "contains") in haystack


def has_prefix(text: str, prefix: str) -> bool:
    """``hasPrefix(s, prefix)``."""
    return _text(text, "hasPrefix").startswith(_text(prefix, "hasPrefix"))


def has_suffix(text: str, suffix: str) -> bool:
    """``hasSuffix(s, suffix)``."""
    return _text(text, "hasSuffix").endswith(_text(suffix, "hasSuffix"))


def to_upper(text: str) -> str:
    """Upper-case text."""
    return _text(text, "toUpper").upper()


def to_lower(text: str) -> str:
    """Lower-case text."""
    return _text(text, "toLower").lower()


def title(text: str) -> str:
    """Each word's first letter upper-cased, the rest untouched (Go's strings.Title)."""
    return re.sub(r"(?<!\w)\w", lambda m: m.group(0).upper(), _text(text, "title"))


def trim(text: str, chars: str | None = None) -> str:
    """``trim(s)``: s without leading/trailing white space (or the given characters)."""
    return _text(text, "trim").strip(chars)


def trim_all(text: str, cutset: str) -> str:
    """``trimAll(s, cutset)``: s without leading/trailing characters from cutset."""
    return _text(text, "trimAll").strip(_text(cutset, "trimAll"))


def trim_prefix(text: str, prefix: str) -> str:
    """``trimPrefix(s, prefix)``: s without prefix when it starts with it."""
    return _text(text, "trimPrefix").removeprefix(_text(prefix, "trimPrefix"))


def trim_suffix(text: str, suffix: str) -> str:
    """``trimSuffix(s, suffix)``: s without suffix when it ends with it."""
    return _text(text, "trimSuffix").removesuffix(_text(suffix, "trimSuffix"))


def trunc(text: str, length: int) -> str:
    """``trunc(s, n)``: the first n characters of s (the last -n when n is negative)."""
    text, n = _text(text, "trunc"), int(_number(length, "trunc"))
    return text[n:] if n < 0 else text[:n]


def nospace(text: str) -> str:
    """s without any white space."""
    return "".join(_text(text, "nospace").split())


def quote(*values: Any) -> str:
    """Each value in double quotes, escaped like a JSON string, separated by spaces."""
    return " ".join(_json.dumps(format_value(_present(v, "quote")), ensure_ascii=False) for v in values)


def squote(*values: Any) -> str:
    """Each value in single quotes (no escaping), separated by spaces."""
    return " ".join(f"'{format_value(_present(v, 'squote'))}'" for v in values)


def cat(*values: Any) -> str:
    """The values printed and joined with spaces; null and missing values are left out."""
    return " ".join(format_value(v) for v in values if not _absent(v))


def indent(text: str, width: int) -> str:
    """``indent(s, n)``: every line of s, the first included, indented by n spaces (sprig)."""
    pad = " " * int(_number(width, "indent"))
    return pad + _text(text, "indent").replace("\n", "\n" + pad)


def nindent(text: str, width: int) -> str:
    """``nindent(s, n)``: a newline, then ``indent(s, n)`` — for a block after a ``key:``."""
    return "\n" + indent(text, width)


def regex_match(text: str, pattern: str) -> bool:
    """``regexMatch(s, regex)``: whether the Python regex matches anywhere in s."""
    return re.search(_text(pattern, "regexMatch"), _text(text, "regexMatch")) is not None


def regex_replace_all(text: str, pattern: str, replacement: str) -> str:
    """``regexReplaceAll(s, regex, repl)``: every match replaced (``\\1`` refers to groups)."""
    return re.sub(
        _text(pattern, "regexReplaceAll"),
        _text(replacement, "regexReplaceAll"),
        _text(text, "regexReplaceAll"),
    )


def to_string(value: Any) -> str:
    """The value as ``{{ }}`` prints it (``true``, ``1000000``, ``["a"]``)."""
    return format_value(_present(value, "toString"))


# --- encoding ---------------------------------------------------------------------------------


def b64enc(text: str) -> str:
    """Standard base64 of the UTF-8 text."""
    import base64

    return base64.b64encode(_text(text, "b64enc").encode()).decode("ascii")


def b64dec(text: str) -> str:
    """The UTF-8 text whose standard base64 is given; invalid input is an error."""
    import base64
    import binascii

    try:
        return base64.b64decode(_text(text, "b64dec"), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise FunctionError(f"b64dec: not base64 of UTF-8 text ({exc})") from None


def sha256sum(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text."""
    import hashlib

    return hashlib.sha256(_text(text, "sha256sum").encode()).hexdigest()


def json_object(text: str) -> dict[str, Any]:
    """``json(s)``: the JSON object in s as a map; anything else is an error."""
    value = _parse_json(text, "json")
    if not isinstance(value, dict):
        raise FunctionError(f"json: expected a JSON object, got {_kind(value)}")
    return value


def json_array(text: str) -> list[Any]:
    """``jsonArray(s)``: the JSON array in s as a list; anything else is an error."""
    value = _parse_json(text, "jsonArray")
    if not isinstance(value, list):
        raise FunctionError(f"jsonArray: expected a JSON array, got {_kind(value)}")
    return value


def from_json(text: str) -> Any:
    """``fromJson(s)``: any JSON value."""
    return _parse_json(text, "fromJson")


def _parse_json(text: str, name: str) -> Any:
    try:
        return _json.loads(_text(text, name))
    except ValueError as exc:
        raise FunctionError(f"{name}: invalid JSON: {exc}") from None


def to_json(value: Any) -> str:
    """JSON indented by 2 spaces with sorted keys, no trailing newline."""
    return _json.dumps(to_plain(value), indent=2, sort_keys=True, ensure_ascii=False)


def to_yaml(value: Any) -> str:
    """Block-style YAML with sorted keys and **no** trailing newline (Helm's choice, not the
    original's: the template decides where lines end). Combine with ``indent``/``nindent``."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(
        to_plain(value), Dumper=dumper, default_flow_style=False, sort_keys=True, allow_unicode=True
    )
    if text.endswith("\n...\n"):  # a lone scalar gets an end-of-document marker
        text = text[: -len("...\n")]
    return text.rstrip("\n")


def from_yaml(text: str) -> Any:
    """``fromYaml(s)``: the YAML value in s (same loader as attribute files)."""
    import yaml

    try:
        return parse_yaml(_text(text, "fromYaml"))
    except yaml.YAMLError as exc:
        raise FunctionError(f"fromYaml: invalid YAML: {exc}") from None


# --- absence and defaults ----------------------------------------------------------------------


def or_def(value: Any, fallback: Any) -> Any:
    """``orDef(v, d)``: v unless it is null or missing, then d."""
    return fallback if _absent(value) else value


def or_defs(value: Any, fallback: Any) -> Any:
    """``orDefs(list, d)``: the list when it is a non-empty list, otherwise ``[d]``."""
    value = resolved(value)
    if isinstance(value, (list, tuple)) and value:
        return value
    return [fallback]


def if_or_def(cond: Any, then: Any, otherwise: Any) -> Any:
    """``ifOrDef(c, a, b)``: a when c is present (false and "" count as present), else b."""
    return otherwise if _absent(cond) else then


def default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """``default(v, d[, true])``: same as the Jinja filter ``v | default(d)`` — d when v is
    missing (or, with true, also when it is empty/false). For sprig's "d when v is empty"
    write ``default(v, d, true)``."""
    value = resolved(value)
    if isinstance(value, Undefined) or (boolean and not value):
        return fallback
    return value


def empty(value: Any) -> bool:
    """Whether v is missing, null, false, 0, "" or an empty list/map (sprig's notion)."""
    value = resolved(value)
    return isinstance(value, Undefined) or not value


def coalesce(*values: Any) -> Any:
    """The first value that is not empty (see :func:`empty`), else null."""
    return next((v for v in values if not empty(v)), None)


# --- type tests --------------------------------------------------------------------------------

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


def is_kind(value: Any, kind: str) -> bool:
    """``isKind(v, kind)``: kind is ``map``, ``slice``, ``string``, ``bool``, ``int``,
    ``float64`` (any number), or ``invalid`` (null/missing)."""
    return kind in _kind_names(value)


def is_type(value: Any, type_name: str) -> bool:
    """``isType(v, "type")``: Go names (``string``, ``float64``, ``bool``, ``[]interface {}``,
    ``map[string]interface {}``) and Python ones (``str``, ``int``, ``float``, ``list``,
    ``dict``) both work."""
    return type_name in _kind_names(value)


def kind_of(value: Any) -> str:
    """The kind name of v (``map``, ``slice``, ``string``, ``bool``, ``int``, ``float64``)."""
    return _kind(value)


def is_string(value: Any) -> bool:
    """Whether v is a string."""
    return isinstance(resolved(value), str)


def is_array(value: Any) -> bool:
    """Whether v is a list."""
    return isinstance(resolved(value), (list, tuple))


def is_map(value: Any) -> bool:
    """Whether v is a map."""
    return isinstance(resolved(value), Mapping)


def is_nil(value: Any) -> bool:
    """Whether v is null or missing."""
    return _absent(value)


def is_map_first(mapping: Any, key: Any) -> bool:
    """``isMapFirst(m, key)``: whether key comes first among m's keys in sorted order."""
    ordered = sort_alpha(_present(mapping, "isMapFirst"))
    return bool(ordered) and ordered[0] == format_value(key)


def is_map_last(mapping: Any, key: Any) -> bool:
    """``isMapLast(m, key)``: whether key comes last among m's keys in sorted order."""
    ordered = sort_alpha(_present(mapping, "isMapLast"))
    return bool(ordered) and ordered[-1] == format_value(key)


def how_deep(data: Any, elem: Any) -> int:
    """``howDeep(data, elem)``: 1 when map elem is a value of map data, 2 when it is a value
    of one of data's child maps, otherwise 0 (also when elem is not a map)."""
    data, elem = resolved(data), resolved(elem)
    if not isinstance(data, Mapping) or not isinstance(elem, Mapping):
        return 0
    if any(v is elem or v == elem for v in data.values()):
        return 1
    for child in data.values():
        if isinstance(child, Mapping) and any(v is elem or v == elem for v in child.values()):
            return 2
    return 0


# --- numbers -----------------------------------------------------------------------------------


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


def add(*values: Any) -> int | float:
    """``add(a, b, ...)``: the sum. Any YAML number or numeric string works."""
    return sum((_number(v, "add") for v in values), 0)


def add1(value: Any) -> int | float:
    """``add1(n)``: n + 1."""
    return _number(value, "add1") + 1


def sub(a: Any, b: Any) -> int | float:
    """``sub(a, b)``: a - b."""
    return _number(a, "sub") - _number(b, "sub")


def mul(*values: Any) -> int | float:
    """``mul(a, b, ...)``: the product."""
    result: int | float = 1
    for v in values:
        result *= _number(v, "mul")
    return result


def div(a: Any, b: Any) -> int | float:
    """``div(a, b)``: a / b; two integers give an integer truncated toward zero (as Go)."""
    x, y = _number(a, "div"), _number(b, "div")
    if y == 0:
        raise FunctionError("div: division by zero")
    if isinstance(x, int) and isinstance(y, int):
        quotient = abs(x) // abs(y)
        return quotient if (x >= 0) == (y >= 0) else -quotient
    return x / y


def mod(a: Any, b: Any) -> int | float:
    """``mod(a, b)``: the remainder of a / b, with the sign of a (as Go)."""
    x, y = _number(a, "mod"), _number(b, "mod")
    if y == 0:
        raise FunctionError("mod: division by zero")
    if isinstance(x, int) and isinstance(y, int):
        return x - y * div(x, y)
    import math

    return math.fmod(x, y)


def to_int(value: Any) -> int:
    """``int(v)``: v as an integer (a float is truncated, a numeric string parsed)."""
    return int(_number(value, "int"))


def to_float(value: Any) -> float:
    """``float(v)``: v as a float."""
    return float(_number(value, "float"))


def atoi(text: Any) -> int:
    """``atoi(s)``: the integer written in s; anything else is an error (sprig gave 0)."""
    try:
        return int(_text(text, "atoi").strip())
    except ValueError:
        raise FunctionError(f"atoi: not an integer: {text!r}") from None


def _numbers(values: tuple[Any, ...], name: str) -> list[int | float]:
    if len(values) == 1 and isinstance(resolved(values[0]), (list, tuple)):
        values = tuple(values[0])
    if not values:
        raise FunctionError(f"{name}: needs at least one number")
    return [_number(v, name) for v in values]


def max_(*values: Any) -> int | float:
    """``max(a, b, ...)`` or ``max(list)``: the largest number."""
    return max(_numbers(values, "max"))


def min_(*values: Any) -> int | float:
    """``min(a, b, ...)`` or ``min(list)``: the smallest number."""
    return min(_numbers(values, "min"))


def until(count: Any) -> list[int]:
    """``until(n)``: the list 0, 1, ..., n-1."""
    return list(range(int(_number(count, "until"))))


# --- lists and maps ----------------------------------------------------------------------------


def pairs(*args: Any) -> dict[Any, Any]:
    """``pairs(k1, v1, k2, v2, ...)``: a map of the pairs — handy to pass several values to a
    macro or an included partial. An odd number of arguments is an error."""
    if len(args) % 2:
        raise FunctionError(f"pairs: needs key/value pairs, got an odd number of arguments ({len(args)})")
    return {format_value(_present(args[i], "pairs")): args[i + 1] for i in range(0, len(args), 2)}


def dict_(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    """``dict("k", v, ...)`` as sprig, or ``dict(k=v)`` as Jinja's own ``dict``."""
    result = pairs(*args)
    result.update(kwargs)
    return result


def list_(*items: Any) -> list[Any]:
    """``list(a, b, ...)``: a list of the arguments."""
    return list(items)


def keys(*mappings: Any) -> list[Any]:
    """``keys(m, ...)``: the keys of the maps, in their order (use ``sortAlpha`` to sort)."""
    result: list[Any] = []
    for mapping in mappings:
        result.extend(_present(mapping, "keys").keys())
    return result


def has_key(mapping: Any, key: Any) -> bool:
    """``hasKey(m, key)``: whether map m has key."""
    return key in _present(mapping, "hasKey")


def sort_alpha(items: Any) -> list[str]:
    """``sortAlpha(list)``: the items (or a map's keys) printed and sorted as strings."""
    items = _present(items, "sortAlpha")
    return sorted(format_value(_present(i, "sortAlpha")) for i in items)


def first(items: Any) -> Any:
    """The first item of a list, or null when empty."""
    items = _present(items, "first")
    return items[0] if items else None


def last(items: Any) -> Any:
    """The last item of a list, or null when empty."""
    items = _present(items, "last")
    return items[-1] if items else None


def rest(items: Any) -> list[Any]:
    """All items but the first."""
    return list(_present(items, "rest"))[1:]


def initial(items: Any) -> list[Any]:
    """All items but the last."""
    return list(_present(items, "initial"))[:-1]


def uniq(items: Any) -> list[Any]:
    """The items without repeats, first occurrence kept."""
    result: list[Any] = []
    for item in _present(items, "uniq"):
        if item not in result:
            result.append(item)
    return result


def compact(items: Any) -> list[Any]:
    """The items that are not empty (see ``empty``)."""
    return [item for item in _present(items, "compact") if not empty(item)]


def length(value: Any) -> int:
    """``len(v)``: the length of a string, list or map (Go's ``len``)."""
    return len(_present(value, "len"))


# --- environment and time ------------------------------------------------------------------------


def getenv(name: str, fallback: str = "") -> str:
    """``getenv(name[, default])``: the environment variable, or the default when it is unset
    or empty."""
    return os.environ.get(_text(name, "getenv")) or fallback


def env(name: str) -> str:
    """``env(name)`` (sprig): the environment variable, or "" when unset."""
    return os.environ.get(_text(name, "env"), "")


def expandenv(text: str) -> str:
    """``$VAR`` and ``${VAR}`` in text replaced by the environment's value ("" when unset)."""

    def value_of(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$(?:\{([^}]*)\}|(\w+))", value_of, _text(text, "expandenv"))


def now() -> Any:
    """The current local time, with its zone (a Python datetime: ``now().strftime("%Y")``)."""
    import datetime as _dt

    return _dt.datetime.now().astimezone()


def uuidv4() -> str:
    """A random (version 4) UUID, as text.

    Built from os.urandom as RFC 4122 §4.4 says, rather than with the uuid module, which
    would bring `platform` and friends into every image (see docs/internals.md).
    """
    import os

    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fail(message: Any) -> NoReturn:
    """``fail(msg)``: stop rendering with msg as the error."""
    raise FunctionError(format_value(message))


# --- registry ----------------------------------------------------------------------------------

FUNCTIONS: dict[str, Callable[..., Any]] = {
    # dgr's own set
    "base": base,
    "dir": dir_,
    "split": split,
    "join": join,
    "json": json_object,
    "jsonArray": json_array,
    "getenv": getenv,
    "datetime": now,
    "toUpper": to_upper,
    "toLower": to_lower,
    "contains": contains,
    "replace": replace,
    "repeat": repeat,
    "hasPrefix": has_prefix,
    "hasSuffix": has_suffix,
    "pairs": pairs,
    "orDef": or_def,
    "orDefs": or_defs,
    "ifOrDef": if_or_def,
    "add": add,
    "sub": sub,
    "mul": mul,
    "div": div,
    "mod": mod,
    "howDeep": how_deep,
    "HowDeep": how_deep,
    "isMapFirst": is_map_first,
    "IsMapFirst": is_map_first,
    "isMapLast": is_map_last,
    "IsMapLast": is_map_last,
    "isString": is_string,
    "isArray": is_array,
    "isMap": is_map,
    "isNil": is_nil,
    "isKind": is_kind,
    "isType": is_type,
    "toJson": to_json,
    "toYaml": to_yaml,
    # sprig helpers
    "b64enc": b64enc,
    "b64dec": b64dec,
    "sha256sum": sha256sum,
    "indent": indent,
    "nindent": nindent,
    "quote": quote,
    "squote": squote,
    "cat": cat,
    "default": default,
    "empty": empty,
    "coalesce": coalesce,
    "keys": keys,
    "sortAlpha": sort_alpha,
    "add1": add1,
    "env": env,
    "expandenv": expandenv,
    "trim": trim,
    "trimAll": trim_all,
    "trimPrefix": trim_prefix,
    "trimSuffix": trim_suffix,
    "trunc": trunc,
    "nospace": nospace,
    "upper": to_upper,
    "lower": to_lower,
    "title": title,
    "list": list_,
    "dict": dict_,
    "hasKey": has_key,
    "first": first,
    "last": last,
    "rest": rest,
    "initial": initial,
    "uniq": uniq,
    "compact": compact,
    "len": length,
    "uuidv4": uuidv4,
    "now": now,
    "toString": to_string,
    "toPrettyJson": to_json,
    "fromJson": from_json,
    "fromYaml": from_yaml,
    "atoi": atoi,
    "int": to_int,
    "float": to_float,
    "max": max_,
    "min": min_,
    "until": until,
    "splitList": split,
    "regexMatch": regex_match,
    "regexReplaceAll": regex_replace_all,
    "clean": clean,
    "ext": ext,
    "isAbs": is_abs,
    "typeOf": kind_of,
    "kindOf": kind_of,
    "kindIs": is_kind,
    "typeIs": is_type,
    "fail": fail,
}

# Names whose value depends on more than the attributes: the environment, the clock, chance
# (Jinja2's own `lipsum` global and `random` filter too). A template or attribute template
# using one is rendered at every container start, never ahead of time (see prepared.py).
# Add every such function here.
START_TIME_NAMES = frozenset({"getenv", "env", "expandenv", "datetime", "now", "uuidv4", "lipsum", "random"})

# Functions that make no sense as filters (no subject).
_NOT_FILTERS = frozenset({"datetime", "now", "uuidv4", "pairs", "list", "dict", "fail", "cat"})

# Where Jinja2 already has a filter of the same name, Jinja's wins (people know it) — except
# these two, whose output must follow our printing rules (true/false, 1000000).
_OVERRIDE_JINJA_FILTERS = frozenset({"join", "replace"})


def filters(jinja_filters: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """The functions to register as filters, given the names Jinja2 already defines."""
    taken = set(jinja_filters) - _OVERRIDE_JINJA_FILTERS
    return {name: fn for name, fn in FUNCTIONS.items() if name not in taken and name not in _NOT_FILTERS}
