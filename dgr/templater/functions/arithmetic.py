"""Template functions on numbers: add, sub, mul, div, mod, int, float, atoi, max, min, until."""

from __future__ import annotations

from typing import Any

from dgr.templater.values import FunctionError, _number, _text, resolved


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
