"""Template functions on paths and strings: base, dir, join, replace, trimPrefix, indent, quote..."""

from __future__ import annotations

import json as _json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from dgr.templater.values import _absent, _number, _present, _text, format_value


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
