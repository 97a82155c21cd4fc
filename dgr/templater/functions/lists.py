"""Template functions on lists and maps: pairs, dict, list, keys, hasKey, first, uniq, howDeep..."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dgr.templater.functions.kinds import empty
from dgr.templater.values import FunctionError, _present, format_value, resolved


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
