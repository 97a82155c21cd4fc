"""Template functions on the kind of a value and its absence: isKind, kindOf, isNil, orDef, default..."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Undefined

from dgr.templater.values import _absent, _kind, _kind_names, resolved


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
