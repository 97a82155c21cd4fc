"""The functions templates can call: their names, which are filters, which depend on the start.

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

The functions live in one module per family (text, encoding, kinds, arithmetic, lists,
environment); the values they take and print follow dgr/templater/values.py. Imported at
every container start that renders: keep the imports to what Jinja2 loads anyway (PyYAML
only inside the functions that need it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dgr.templater.functions.arithmetic import (
    add,
    add1,
    atoi,
    div,
    max_,
    min_,
    mod,
    mul,
    sub,
    to_float,
    to_int,
    until,
)
from dgr.templater.functions.encoding import (
    b64dec,
    b64enc,
    from_json,
    from_yaml,
    json_array,
    json_object,
    sha256sum,
    to_json,
    to_yaml,
)
from dgr.templater.functions.environment import env, expandenv, fail, getenv, now, uuidv4
from dgr.templater.functions.kinds import (
    coalesce,
    default,
    empty,
    if_or_def,
    is_array,
    is_kind,
    is_map,
    is_nil,
    is_string,
    is_type,
    kind_of,
    or_def,
    or_defs,
)
from dgr.templater.functions.lists import (
    compact,
    dict_,
    first,
    has_key,
    how_deep,
    initial,
    is_map_first,
    is_map_last,
    keys,
    last,
    length,
    list_,
    pairs,
    rest,
    sort_alpha,
    uniq,
)
from dgr.templater.functions.text import (
    base,
    cat,
    clean,
    contains,
    dir_,
    ext,
    has_prefix,
    has_suffix,
    indent,
    is_abs,
    join,
    nindent,
    nospace,
    quote,
    regex_match,
    regex_replace_all,
    repeat,
    replace,
    split,
    squote,
    title,
    to_lower,
    to_string,
    to_upper,
    trim,
    trim_all,
    trim_prefix,
    trim_suffix,
    trunc,
)

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
